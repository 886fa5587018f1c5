"""Plugins, found through Python entry points; the built-in ones register the same way
(pyproject.toml). A third-party package adds its own under the same groups:

- ``greenroom.adapters``: ``factory(host: AdapterHost) -> Adapter | None`` (None: not enabled here,
  e.g. no token set). The adapter submits each message to ``host.dispatcher``.
- ``greenroom.handlers``: ``factory(services: Services) -> Iterable[Route | Observer]``.
- ``greenroom.commands``: ``factory(services: Services) -> Iterable[Command]`` (a `CommandSet`).

docs/plugins.md shows a whole plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from greenroom.core.commands import CommandRegistry
from greenroom.core.config import Config, ConfigError
from greenroom.core.dispatch import Dispatcher

ADAPTERS = "greenroom.adapters"
HANDLERS = "greenroom.handlers"
COMMANDS = "greenroom.commands"


@dataclass(frozen=True)
class AdapterHost:
    """What an adapter plugin is built with: where messages go, the commands (for the platform's
    command menu) and the configuration (a plugin's own settings: ``config.plugins[name]``)."""

    dispatcher: Dispatcher
    commands: CommandRegistry
    config: Config


def load_plugins(group: str) -> dict[str, Callable[..., Any]]:
    """The factories registered under ``group``, by entry-point name (sorted, so the order is stable)."""
    found: dict[str, Callable[..., Any]] = {}
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        if entry.name in found:
            continue  # the same distribution seen twice on sys.path
        try:
            found[entry.name] = entry.load()
        except Exception as e:
            raise ConfigError(f"the {group} plugin '{entry.name}' ({entry.value}) does not load: {e}") from None
    if not found and group != ADAPTERS:
        raise ConfigError(f"no {group} plugins are installed: reinstall greenroom (`make setup`)")
    return found
