"""Plugins, found through Python entry points; the built-in ones register the same way
(pyproject.toml). A third-party package adds its own under the same groups:

- ``greenroom.adapters``: ``factory(config: Config) -> build | None``: None when the platform is not
  enabled (no token set), decided from the configuration alone; else ``build(host: AdapterHost)
  -> Adapter``, called once the models are loaded. The adapter submits messages to ``host.dispatcher``.
- ``greenroom.handlers``: ``factory(services: Services) -> Iterable[Route | Observer]``.
- ``greenroom.commands``: ``factory(services: Services) -> Iterable[Command]`` (a `CommandSet`).

docs/plugins.md shows a whole plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from greenroom.core.commands import CommandRegistry
from greenroom.core.config import Config, ConfigError
from greenroom.core.dispatch import Dispatcher

log = logging.getLogger(__name__)

ADAPTERS = "greenroom.adapters"
HANDLERS = "greenroom.handlers"
COMMANDS = "greenroom.commands"


@dataclass(frozen=True)
class AdapterHost:
    """What an enabled adapter plugin is built with: where messages go, the commands (for the
    platform's command menu) and the configuration (a plugin's own settings: ``config.plugins[name]``)."""

    dispatcher: Dispatcher
    commands: CommandRegistry
    config: Config


def load_plugins(group: str) -> dict[str, Callable[..., Any]]:
    """The factories registered under ``group``, by entry-point name (sorted, so the order is stable)."""
    found: dict[str, Callable[..., Any]] = {}
    owners: dict[str, str] = {}
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        owner = entry.dist.name if entry.dist is not None else "?"
        if entry.name in found:
            if owners[entry.name] != owner:
                raise ConfigError(
                    f"two installed packages, {owners[entry.name]} and {owner}, both register the {group} plugin "
                    f"'{entry.name}': uninstall one"
                )
            continue  # the same package seen twice on sys.path
        try:
            found[entry.name] = entry.load()
        except Exception as e:
            log.error("the %s plugin %s (%s) does not load", group, entry.name, entry.value, exc_info=True)
            raise ConfigError(f"the {group} plugin '{entry.name}' ({entry.value}) does not load: {e}") from e
        owners[entry.name] = owner
    if not found and group != ADAPTERS:
        raise ConfigError(f"no {group} plugins are installed: reinstall greenroom (`make setup`)")
    return found
