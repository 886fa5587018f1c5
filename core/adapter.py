"""What a platform plugin implements: an `Adapter` that feeds messages in, and a `Replier` per
message that answers it. Both are small on purpose: an afternoon's work for a new platform."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SentRef:
    """A message the bot sent, as the adapter needs it to edit it later."""

    id: str
    raw: Any = field(default=None, compare=False)


@runtime_checkable
class Replier(Protocol):
    """What an adapter offers for answering one incoming message."""

    max_len: int
    edit_interval: float
    placeholder_delay: float

    async def send(self, text: str) -> SentRef: ...

    async def edit(self, ref: SentRef, text: str) -> None: ...

    def typing(self) -> AbstractAsyncContextManager[None]: ...

    async def report(self, trace: dict[str, Any]) -> None:
        """Receive the structured record of a finished turn (the console's --json uses it)."""


class Adapter(Protocol):
    """One chat platform connection, feeding the dispatcher it was built with (`core.plugins`)."""

    name: str

    @property
    def ready(self) -> bool:
        """Connected to the platform and taking messages."""

    async def start(self) -> None:
        """Connect and start taking messages; raises AdapterError when the platform refuses."""

    async def watch(self) -> None:
        """Return (or raise) only when the platform connection is lost for good."""

    async def stop_intake(self) -> None: ...

    async def close(self) -> None: ...
