"""The Telegram adapter on python-telegram-bot: updates in, neutral messages to the dispatcher,
replies as HTML with a plain-text fallback, throttled edits for streaming."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta (PTB's future default)

from telegram import BotCommand, MessageEntity, ReplyParameters, Update
from telegram import Message as TgMessage
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, RetryAfter
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from greenroom.bots.common import AdapterError, command_menu, repeating
from greenroom.bots.telegram.html import to_html
from greenroom.core.adapter import SentRef
from greenroom.core.config import TelegramSection, secret
from greenroom.core.events import Actor, Attachment, AttachmentKind, ConversationKey, Link, Message
from greenroom.core.plugins import AdapterHost

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_LEN = 4096
BOT_DOWNLOAD_LIMIT = 20_000_000  # getFile serves bots files up to 20 MB
ADMIN_CACHE_SECONDS = 300
RETRIES = 3


def _seconds(value: int | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def call_with_retry(send: Callable[..., Awaitable[Any]], text: str, **kwargs: Any) -> Any:
    """Send as HTML; wait out flood limits (429 retry_after); resend as plain text on a parse error."""
    html: dict[str, Any] = {"text": to_html(text), "parse_mode": ParseMode.HTML}
    waits = 0
    while True:
        try:
            return await send(**html, **kwargs)
        except RetryAfter as e:
            waits += 1
            if waits > RETRIES:
                raise
            log.warning("telegram flood limit: waiting %.1f s", _seconds(e.retry_after))
            await asyncio.sleep(_seconds(e.retry_after))
        except BadRequest as e:
            if "can't parse entities" not in e.message.lower() or "parse_mode" not in html:
                raise
            log.info("telegram rejected the HTML (%s); sending plain text", e.message)
            html = {"text": text}


class TelegramReplier:
    """Answers one message: the first part replies to it (in groups), edits stream the rest."""

    max_len = MAX_LEN

    def __init__(self, tg: TgMessage, settings: TelegramSection) -> None:
        self.tg = tg
        self.edit_interval = settings.edit_interval
        self.placeholder_delay = settings.placeholder_delay
        self._reply_to = None if tg.chat.type == ChatType.PRIVATE else tg.message_id

    def _where(self) -> dict[str, Any]:
        where: dict[str, Any] = {"chat_id": self.tg.chat_id}
        if self.tg.is_topic_message and self.tg.message_thread_id:
            where["message_thread_id"] = self.tg.message_thread_id
        return where

    async def send(self, text: str) -> SentRef:
        kwargs = self._where()
        if self._reply_to is not None:
            kwargs["reply_parameters"] = ReplyParameters(self._reply_to, allow_sending_without_reply=True)
            self._reply_to = None
        sent = await call_with_retry(self.tg.get_bot().send_message, text, **kwargs)
        return SentRef(str(sent.message_id))

    async def edit(self, ref: SentRef, text: str) -> None:
        try:
            await call_with_retry(
                self.tg.get_bot().edit_message_text, text, chat_id=self.tg.chat_id, message_id=int(ref.id)
            )
        except BadRequest as e:
            if "not modified" not in e.message.lower():
                raise

    def address(self) -> dict[str, Any]:
        """Where to answer, for a worker in another process (`bots.remote`)."""
        return {
            "platform": PLATFORM,
            "chat_id": self.tg.chat_id,
            "chat_type": self.tg.chat.type,
            "message_id": self.tg.message_id,
            "thread_id": self.tg.message_thread_id if self.tg.is_topic_message else None,
        }

    def typing(self):
        return repeating(lambda: self.tg.get_bot().send_chat_action(action=ChatAction.TYPING, **self._where()), 4.5)

    async def report(self, trace: dict[str, Any]) -> None:
        return None


class TelegramAdapter:
    """Polling or webhook intake for one bot token, feeding the dispatcher."""

    name = PLATFORM

    def __init__(self, host: AdapterHost, settings: TelegramSection, token: str) -> None:
        self.dispatcher = host.dispatcher
        self.commands = host.commands
        self.settings = settings
        self.limit = int(settings.max_download_mb * 1_000_000)
        self.limit_note = "the bot's configured limit"
        if not settings.base_url and self.limit >= BOT_DOWNLOAD_LIMIT:  # Telegram's own servers cap bot downloads
            self.limit, self.limit_note = BOT_DOWNLOAD_LIMIT, "Telegram lets bots download files up to 20 MB"
        builder = Application.builder().token(token)
        if settings.base_url:
            builder = builder.base_url(settings.base_url)
        if settings.base_file_url:
            builder = builder.base_file_url(settings.base_file_url)
        self.application = builder.build()
        self.application.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        self._admins: dict[int, tuple[float, frozenset[int]]] = {}
        self.accepting = False

    async def start(self) -> None:
        try:
            await self.application.initialize()
        except InvalidToken:
            raise AdapterError(f"telegram: the token in {self.settings.token_env} was rejected") from None
        bot = self.application.bot
        await bot.set_my_commands([BotCommand(n, d) for n, d in command_menu(self.commands, 256)])
        await self.application.start()
        self.accepting = True
        updater = self.application.updater
        assert updater is not None  # built with one
        if self.settings.webhook_url:
            await updater.start_webhook(
                listen=self.settings.listen,
                port=self.settings.port,
                url_path=self._webhook_path(),
                webhook_url=self.settings.webhook_url,
                secret_token=secret(self.settings.secret_token_env),
            )
        else:
            await updater.start_polling(poll_interval=0, timeout=self.settings.poll_timeout)
        log.info("telegram: @%s is %s", bot.username, "on a webhook" if self.settings.webhook_url else "polling")

    def _webhook_path(self) -> str:
        return urlparse(self.settings.webhook_url).path.lstrip("/")

    @property
    def ready(self) -> bool:
        updater = self.application.updater
        return self.accepting and self.application.running and updater is not None and updater.running

    async def watch(self) -> None:
        await asyncio.get_running_loop().create_future()  # PTB retries lost connections itself

    async def stop_intake(self) -> None:
        self.accepting = False
        if self.application.updater and self.application.updater.running:
            await self.application.updater.stop()

    async def close(self) -> None:
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    # -- incoming ------------------------------------------------------------------------------
    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        tg = update.message
        if tg is None or tg.from_user is None or not self.accepting or self._for_another_bot(tg):
            return
        message = await self.to_message(tg)
        await self.dispatcher.submit(message, TelegramReplier(tg, self.settings))

    def _for_another_bot(self, tg: TgMessage) -> bool:
        """A command addressed to another bot in a group (`/start@otherbot`): not ours to answer."""
        text = (tg.text or tg.caption or "").strip()
        head = text.split(maxsplit=1)[0] if text.startswith("/") else ""
        _, at, name = head.partition("@")
        return bool(at) and name.lower() != (self.application.bot.username or "").lower()

    async def to_message(self, tg: TgMessage) -> Message:
        """The neutral form of a Telegram message."""
        bot = self.application.bot
        text = tg.text or tg.caption or ""
        entities = tg.parse_entities() if tg.text else tg.parse_caption_entities()
        handle = f"@{bot.username}".lower()
        mentions_bot = any(
            (e.type == MessageEntity.MENTION and t.lower() == handle)
            or (e.type == MessageEntity.TEXT_MENTION and e.user and e.user.id == bot.id)
            for e, t in entities.items()
        )
        if text.lower().startswith(handle):
            text = text[len(handle) :].lstrip(" ,:")
        links = [
            Link((e.url or t) if e.type == MessageEntity.TEXT_LINK else t, "entity")
            for e, t in entities.items()
            if e.type in (MessageEntity.URL, MessageEntity.TEXT_LINK)
        ]
        reply = tg.reply_to_message
        is_reply_to_bot = (
            reply is not None
            and reply.from_user is not None
            and reply.from_user.id == bot.id
            and reply.forum_topic_created is None
        )
        is_direct = tg.chat.type == ChatType.PRIVATE
        user = tg.from_user
        assert user is not None
        author = Actor(
            PLATFORM,
            str(user.id),
            user.full_name,
            user.is_bot,
            is_platform_admin=not is_direct and text.startswith("/") and await self._is_admin(tg),
        )
        thread = str(tg.message_thread_id) if tg.is_topic_message and tg.message_thread_id else None
        return Message(
            id=str(tg.message_id),
            key=ConversationKey(PLATFORM, str(tg.chat_id), thread),
            author=author,
            text=text,
            attachments=tuple(self._attachments(tg)),
            links=tuple(dict.fromkeys(links)),
            reply_to_id=str(reply.message_id) if reply else None,
            mentions_bot=mentions_bot,
            is_direct=is_direct,
            is_reply_to_bot=is_reply_to_bot,
            raw=tg,
        )

    def _attachments(self, tg: TgMessage) -> list[Attachment]:
        found = []
        for media, kind in (
            (tg.video, AttachmentKind.VIDEO),
            (tg.animation, AttachmentKind.VIDEO),
            (tg.video_note, AttachmentKind.VIDEO),
            (tg.photo[-1] if tg.photo else None, AttachmentKind.IMAGE),  # the largest size Telegram made
            (tg.document, AttachmentKind.FILE),
        ):
            if media is None:
                continue
            default_mime = {AttachmentKind.VIDEO: "video/mp4", AttachmentKind.IMAGE: "image/jpeg"}.get(kind, "")
            mime = getattr(media, "mime_type", None) or default_mime
            if kind is AttachmentKind.FILE and mime.startswith(("video/", "image/")):
                kind = AttachmentKind.VIDEO if mime.startswith("video/") else AttachmentKind.IMAGE
            filename = getattr(media, "file_name", None) or f"{kind.value}-{tg.message_id}"
            found.append(
                Attachment(
                    kind,
                    filename,
                    media.file_size or 0,
                    self.limit,
                    self.limit_note,
                    mime,
                    fetch=self._fetcher(media.file_id),
                )
            )
            if kind is AttachmentKind.VIDEO:
                break  # an animation also carries its document: one attachment per file
        return found

    def _fetcher(self, file_id: str) -> Callable[[], Awaitable[bytes]]:
        async def fetch() -> bytes:
            file = await self.application.bot.get_file(file_id)
            return bytes(await file.download_as_bytearray())

        return fetch

    async def _is_admin(self, tg: TgMessage) -> bool:
        """Whether the sender administers this chat (getChatAdministrators, cached for 5 minutes)."""
        now = time.monotonic()
        cached = self._admins.get(tg.chat_id)
        if cached is None or cached[0] < now:
            members = await self.application.bot.get_chat_administrators(tg.chat_id)
            cached = (now + ADMIN_CACHE_SECONDS, frozenset(m.user.id for m in members))
            self._admins[tg.chat_id] = cached
        return tg.from_user is not None and tg.from_user.id in cached[1]
