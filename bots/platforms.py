"""The built-in platforms as adapter plugins (``greenroom.adapters``): each says whether it is enabled
from the configuration alone (its token set) and imports its client library only when it is."""

from __future__ import annotations

from collections.abc import Callable

from greenroom.bots.common import platform_token
from greenroom.core.adapter import Adapter
from greenroom.core.config import Config
from greenroom.core.plugins import AdapterHost

Build = Callable[[AdapterHost], Adapter]


def discord(config: Config) -> Build | None:
    token = platform_token("discord", config.discord)
    if token is None:
        return None

    def build(host: AdapterHost) -> Adapter:
        from greenroom.bots.discord import DiscordAdapter

        return DiscordAdapter(host, config.discord, token)

    return build


def telegram(config: Config) -> Build | None:
    token = platform_token("telegram", config.telegram)
    if token is None:
        return None

    def build(host: AdapterHost) -> Adapter:
        from greenroom.bots.telegram import TelegramAdapter

        return TelegramAdapter(host, config.telegram, token)

    return build
