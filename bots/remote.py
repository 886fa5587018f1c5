"""Answering from another process: a replier for a platform message named by its address (the
video workers post descriptions through the platform APIs with these)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from greenroom.core.adapter import Replier
from greenroom.core.config import Config, ConfigError, PlatformSection, secret


def _token(name: str, section: PlatformSection) -> str:
    token = secret(section.token_env)  # type: ignore[attr-defined]
    if token is None:
        raise ConfigError(f"a video job from {name} needs {section.token_env} set on this worker")  # type: ignore[attr-defined]
    return token


@asynccontextmanager
async def remote_replier(config: Config, address: dict[str, Any]) -> AsyncIterator[Replier]:
    """A replier like the adapter's own for that message, on a client opened for this use only."""
    if address["platform"] == "telegram":
        from telegram import Bot, Chat
        from telegram import Message as TgMessage

        from greenroom.bots.telegram import TelegramReplier

        c = config.telegram
        async with Bot(_token("telegram", c), **({"base_url": c.base_url} if c.base_url else {})) as bot:  # type: ignore[arg-type]
            tg = TgMessage(
                address["message_id"],
                dt.datetime.now(dt.UTC),
                Chat(address["chat_id"], address["chat_type"]),
                message_thread_id=address["thread_id"],
                is_topic_message=address["thread_id"] is not None,
            )
            tg.set_bot(bot)
            yield TelegramReplier(tg, c)
    elif address["platform"] == "discord":
        import discord

        from greenroom.bots.discord import DiscordReplier, point_at

        point_at(config.discord)
        client = discord.Client(intents=discord.Intents.none())
        await client.login(_token("discord", config.discord))  # REST only: no gateway connection
        try:
            channel = client.get_partial_messageable(int(address["channel_id"]))
            reply_to = address.get("reply_to")
            yield DiscordReplier(
                channel, config.discord, channel.get_partial_message(int(reply_to)) if reply_to else None
            )
        finally:
            await client.close()
    else:
        raise ConfigError(f"video workers cannot answer on {address['platform']}")
