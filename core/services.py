"""The services a plugin may use, as the composition root (`greenroom.compose`) provides them.

Plugin factories (entry points in the ``greenroom.handlers`` and ``greenroom.commands`` groups)
take a `Services` and keep only what they use; models load on first use.
"""

from __future__ import annotations

from typing import Protocol

from greenroom.core.characters import Characters
from greenroom.core.commands import CommandRegistry
from greenroom.core.config import Config
from greenroom.core.dispatch import Dispatcher
from greenroom.core.factcheck import FactCheck
from greenroom.core.lorebooks import Lorebooks
from greenroom.core.metrics import Metrics
from greenroom.core.persona import PersonaEngine
from greenroom.core.video import VideoDesk
from greenroom.memory.audit import AuditLog
from greenroom.memory.history import History
from greenroom.memory.library import Library
from greenroom.memory.long_term import LongTermMemory
from greenroom.memory.settings import Settings


class Services(Protocol):
    """Read-only access to the process's services."""

    @property
    def config(self) -> Config: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def history(self) -> History: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def library(self) -> Library: ...

    @property
    def long_term(self) -> LongTermMemory: ...

    @property
    def characters(self) -> Characters: ...

    @property
    def lorebooks(self) -> Lorebooks: ...

    @property
    def persona(self) -> PersonaEngine: ...

    @property
    def factcheck(self) -> FactCheck: ...

    @property
    def video(self) -> VideoDesk: ...

    @property
    def commands(self) -> CommandRegistry: ...

    @property
    def dispatcher(self) -> Dispatcher: ...
