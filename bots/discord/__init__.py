"""The Discord adapter on discord.py: gateway messages and slash commands in, neutral messages to
the dispatcher; replies with no pings allowed, streamed by throttled edits."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import discord
import yarl
from discord import app_commands

from greenroom.bots.common import AdapterError, command_menu
from greenroom.core.adapter import SentRef
from greenroom.core.config import DiscordSection
from greenroom.core.dispatch import CLOSING, DECLINED
from greenroom.core.events import Actor, Attachment, AttachmentKind, ConversationKey, Link, Message, urls_in
from greenroom.core.plugins import AdapterHost

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_LEN = 2000
NO_PINGS = discord.AllowedMentions.none()


def intents(settings: DiscordSection) -> discord.Intents:
    """Guild and DM messages; message content only when configured (mention-only mode needs none)."""
    chosen = discord.Intents.none()
    chosen.guilds = chosen.guild_messages = chosen.dm_messages = True
    chosen.message_content = settings.message_content
    return chosen


def point_at(settings: DiscordSection) -> None:
    """Send REST and gateway traffic to a proxy or test server instead of discord.com."""
    if settings.api_base:
        discord.http.Route.BASE = settings.api_base.rstrip("/")
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def client_for(settings: DiscordSection) -> discord.Client:
    """One gateway connection, or the configured shards of a sharded bot."""
    if settings.shard_count:
        if any(i >= settings.shard_count for i in settings.shard_ids):
            raise AdapterError(
                f"discord.shard_ids {settings.shard_ids} must be below shard_count {settings.shard_count}"
            )
        return discord.AutoShardedClient(
            intents=intents(settings),
            allowed_mentions=NO_PINGS,
            shard_count=settings.shard_count,
            shard_ids=settings.shard_ids or None,  # type: ignore[arg-type]  # None: all the shards
        )
    return discord.Client(intents=intents(settings), allowed_mentions=NO_PINGS)


class DiscordReplier:
    """Answers in the message's channel (or thread); the first part replies to it in servers."""

    max_len = MAX_LEN

    def __init__(
        self,
        channel: discord.abc.Messageable,
        settings: DiscordSection,
        reference: discord.Message | discord.PartialMessage | None = None,
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.edit_interval = settings.edit_interval
        self.placeholder_delay = settings.placeholder_delay

    async def send(self, text: str) -> SentRef:
        reference, self.reference = self.reference, None
        sent = await self.channel.send(
            text,
            reference=reference,  # type: ignore[arg-type]  # None: no reply reference
            mention_author=False,
            allowed_mentions=NO_PINGS,
        )
        return SentRef(str(sent.id), sent)

    async def edit(self, ref: SentRef, text: str) -> None:
        message = ref.raw or self.channel.get_partial_message(int(ref.id))  # type: ignore[attr-defined]
        await message.edit(content=text, allowed_mentions=NO_PINGS)

    def address(self) -> dict[str, Any]:
        """Where to answer, for a worker in another process (`bots.remote`)."""
        return {
            "platform": PLATFORM,
            "channel_id": self.channel.id,  # type: ignore[attr-defined]
            "reply_to": self.reference.id if self.reference is not None else None,
        }

    def typing(self):
        return self.channel.typing()

    async def report(self, trace: dict[str, Any]) -> None:
        return None


class InteractionReplier(DiscordReplier):
    """Answers a slash command through its interaction: "thinking…" once the dispatcher has taken it,
    then follow-up messages; a command the dispatcher declines gets a short answer only its sender sees."""

    def __init__(self, interaction: discord.Interaction, settings: DiscordSection) -> None:
        super().__init__(interaction.channel, settings)  # type: ignore[arg-type]
        self.interaction = interaction
        self._responding = asyncio.Lock()  # the one initial response: "thinking…" or the decline

    async def acknowledge(self) -> None:
        """Show "thinking…" (Discord wants an answer within 3 s) unless something was answered already."""
        async with self._responding:
            if not self.interaction.response.is_done():
                await self.interaction.response.defer(thinking=True)

    async def decline(self, reason: str) -> None:
        async with self._responding:
            if not self.interaction.response.is_done():
                await self.interaction.response.send_message(reason, ephemeral=True)

    async def send(self, text: str) -> SentRef:
        await self.acknowledge()
        sent = await self.interaction.followup.send(text, wait=True, allowed_mentions=NO_PINGS)
        return SentRef(str(sent.id), sent)


class DiscordAdapter:
    """One bot account on the gateway, feeding the dispatcher."""

    name = PLATFORM

    def __init__(self, host: AdapterHost, settings: DiscordSection, token: str) -> None:
        point_at(settings)
        self.dispatcher = host.dispatcher
        self.settings = settings
        self.token = token
        self.limit = int(settings.max_download_mb * 1_000_000)
        self.client = client_for(settings)
        self.tree = app_commands.CommandTree(self.client)
        for name, description in command_menu(host.commands, 100):
            self.tree.add_command(self._slash(name, description))
        self.client.event(self.on_message)
        self._connection: asyncio.Task | None = None
        self.accepting = False

    def _slash(self, name: str, description: str) -> app_commands.Command:
        async def run(interaction: discord.Interaction, args: str = "") -> None:
            await self.on_slash(interaction, name, args)

        return app_commands.Command(name=name, description=description, callback=run)

    async def start(self) -> None:
        try:
            await self.client.login(self.token)
        except discord.LoginFailure:
            raise AdapterError(f"discord: the token in {self.settings.token_env} was rejected") from None
        if self.settings.sync_commands:
            await self.tree.sync()
        self.accepting = True
        self._connection = asyncio.create_task(self.client.connect(reconnect=True))
        ready = asyncio.create_task(self.client.wait_until_ready())
        await asyncio.wait({self._connection, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._connection  # raises why the gateway failed
        log.info("discord: %s is connected", self.client.user)

    @property
    def ready(self) -> bool:
        return self.accepting and self.client.is_ready() and not self.client.is_closed()

    async def watch(self) -> None:
        assert self._connection is not None
        await self._connection  # discord.py reconnects itself; this ends only when it gives up

    async def stop_intake(self) -> None:
        self.accepting = False

    async def close(self) -> None:
        await self.client.close()
        if self._connection is not None:
            await asyncio.gather(self._connection, return_exceptions=True)

    # -- incoming ------------------------------------------------------------------------------
    async def on_message(self, native: discord.Message) -> None:
        if not self.accepting or native.author == self.client.user:
            return
        message = self.to_message(native)
        reference = native if native.guild is not None else None
        await self.dispatcher.submit(message, DiscordReplier(native.channel, self.settings, reference))

    async def on_slash(self, interaction: discord.Interaction, name: str, args: str) -> None:
        if not self.accepting:
            await interaction.response.send_message(CLOSING, ephemeral=True)
            return
        channel = interaction.channel
        message = Message(
            id=str(interaction.id),
            key=self._key(channel),
            author=self._actor(interaction.user),
            text=f"/{name} {args}".strip(),
            is_direct=interaction.guild is None,
            mentions_bot=True,
            raw=interaction,
        )
        replier = InteractionReplier(interaction, self.settings)
        if await self.dispatcher.submit(message, replier, on_decline=replier.decline) is not None:
            await replier.acknowledge()
        else:
            await replier.decline(DECLINED)  # answered "busy" or "slow down" already: then nothing more

    def to_message(self, native: discord.Message) -> Message:
        """The neutral form of a Discord message."""
        me = self.client.user
        assert me is not None
        text = re.sub(rf"<@!?{me.id}>", "", native.content).strip()
        links = [Link(u, "text") for u in urls_in(native.content)]
        links += [Link(e.url, "embed") for e in native.embeds if e.url]
        ref = native.reference
        resolved = ref.resolved if ref is not None else None
        return Message(
            id=str(native.id),
            key=self._key(native.channel),
            author=self._actor(native.author),
            text=text,
            attachments=tuple(self._attachment(a) for a in native.attachments),
            links=tuple(dict.fromkeys(links)),
            reply_to_id=str(ref.message_id) if ref and ref.message_id else None,
            mentions_bot=me.mentioned_in(native) and not native.mention_everyone,
            is_direct=native.guild is None,
            is_reply_to_bot=isinstance(resolved, discord.Message) and resolved.author.id == me.id,
            raw=native,
        )

    @staticmethod
    def _key(channel: Any) -> ConversationKey:
        if isinstance(channel, discord.Thread):
            return ConversationKey(PLATFORM, str(channel.parent_id), str(channel.id))
        return ConversationKey(PLATFORM, str(channel.id))

    @staticmethod
    def _actor(author: discord.User | discord.Member) -> Actor:
        admin = isinstance(author, discord.Member) and (
            author.guild_permissions.manage_guild or author.guild_permissions.administrator
        )
        return Actor(PLATFORM, str(author.id), author.display_name, author.bot, is_platform_admin=admin)

    def _attachment(self, native: discord.Attachment) -> Attachment:
        mime = native.content_type or ""
        kind = (
            AttachmentKind.VIDEO
            if mime.startswith("video/")
            else AttachmentKind.IMAGE
            if mime.startswith("image/")
            else AttachmentKind.FILE
        )
        return Attachment(
            kind,
            native.filename,
            native.size,
            self.limit,
            "the bot's configured limit",
            mime,
            native.url,
            fetch=native.read,
        )
