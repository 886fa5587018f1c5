"""The built-in platforms as adapter plugins (``greenroom.adapters``): each says whether it is enabled
from the configuration alone (its token set) and imports its client library only when it is."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from greenroom.bots.common import platform_token
from greenroom.core.adapter import Adapter
from greenroom.core.config import Config, PlatformSection
from greenroom.core.plugins import AdapterHost

Build = Callable[[AdapterHost], Adapter]


def _platform(name: str, section: PlatformSection, adapter: str) -> Build | None:
    """``adapter`` ("module:Class") built with the token, when the platform is enabled."""
    token = platform_token(name, section)
    if token is None:
        return None
    module, _, cls = adapter.partition(":")

    def build(host: AdapterHost) -> Adapter:
        return getattr(importlib.import_module(module), cls)(host, section, token)

    return build


def discord(config: Config) -> Build | None:
    return _platform("discord", config.discord, "greenroom.bots.discord:DiscordAdapter")


def telegram(config: Config) -> Build | None:
    return _platform("telegram", config.telegram, "greenroom.bots.telegram:TelegramAdapter")
