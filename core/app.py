"""The application object: builds every service from the configuration, lazily.

Models load on first use, so `greenroom character list` does not wait for a language model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from yarl import URL

from core.audit import AuditLog
from core.chat_commands import commands
from core.commands import Access, Context
from core.config import Config, secret
from core.dispatch import Dispatcher, Route
from core.events import Attachment, AttachmentError, AttachmentKind
from core.factcheck import FactCheck
from core.metrics import Metrics
from core.persona import PersonaEngine
from core.ratelimit import RateLimiter
from core.video import VideoDesk
from memory.cards import character_to_card
from memory.characters import CharacterError
from memory.chatharuhi_jsonl import column_name, write_jsonl
from memory.db import Database, ensure_writable
from memory.embedder import Embedder
from memory.history import History
from memory.importers import read_character
from memory.library import Library, LoadResult
from memory.settings import Settings
from memory.store import Cluster, EdgeStore, MemoryStore, ServerStore, StoreError
from memory.verdicts import VerdictCache
from models.fakenews.checker import LinkChecker
from models.fakenews.data import DataError
from models.fakenews.detector import load_detector
from models.fakenews.fetch import FetchError, SafeFetcher
from models.files import ModelFileError
from models.llm import LLM, LlamaCppLLM, LLMUnavailable
from models.video.frames import Limits

if TYPE_CHECKING:
    from models.valley.model import Valley

log = logging.getLogger(__name__)

DEMO_CHARACTERS = Path(__file__).resolve().parent.parent / "memory" / "demo"
CHARACTER_TYPES = ("application/json", "application/zip", "application/x-zip-compressed", "application/octet-stream",
                   "application/jsonl", "application/x-ndjson", "text/plain", "image/png", "image/apng")


class Greenroom:
    """Services for one bot process (or one CLI command)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = ensure_writable(config.data_path())
        self.db = Database(self.data_dir / "greenroom.sqlite3")
        self.history = History(self.db)
        self.settings = Settings(self.db)
        self.commands = commands
        self.audit = AuditLog(self.data_dir / "audit.log")
        self.metrics = Metrics()

    @cached_property
    def store(self) -> MemoryStore:
        c = self.config.memory
        if c.qdrant_url:
            return ServerStore.connect(c.qdrant_url, secret(c.qdrant_api_key_env),
                                       Cluster(c.shard_number, c.replication_factor, c.on_disk_payload))
        return EdgeStore(self.data_dir / "qdrant")

    def check_store(self) -> None:
        """Raise unless the memory store answers (readiness)."""
        self.store.names()

    def check_model(self) -> None:
        """Raise unless the language model can answer: loaded, and its server up when it has one."""
        if ping := getattr(self.llm, "ping", None):
            ping()

    @cached_property
    def embedder(self) -> Embedder:
        c = self.config.embedder
        return Embedder(c.model, c.device, c.batch_size, c.name)

    @cached_property
    def llm(self) -> LLM:
        c = self.config.llm
        if c.backend == "openai":
            from models.llm.openai import OpenAIChatLLM

            return OpenAIChatLLM(c.base_url, c.server_model or "default", c.model, secret(c.api_key_env) or "",
                                 c.n_ctx, c.timeout, c.retries, slots=c.slots)
        return LlamaCppLLM(c.model, c.sha256, n_ctx=c.n_ctx, n_threads=c.n_threads, seed=c.seed)

    @cached_property
    def library(self) -> Library:
        return Library(self.db, self.store, self.embedder, self.llm.count_tokens, self.llm.tokenizer_id)

    @cached_property
    def link_checker(self) -> LinkChecker:
        c = self.config
        fetcher = SafeFetcher(c.fetch.deadline, int(c.fetch.max_article_mb * 1_000_000), c.fetch.allow)
        return LinkChecker(fetcher, lambda: load_detector(c.factcheck.model or None, lambda: self.embedder),
                           VerdictCache(self.db, c.factcheck.cache_minutes * 60), c.factcheck.threshold)

    @cached_property
    def factcheck(self) -> FactCheck:
        return FactCheck(lambda: self.link_checker, self.settings, self.config.factcheck, self.metrics)

    def load_valley(self, checkpoint: str | None = None, runtime: str | None = None) -> "Valley":
        """Valley as configured in ``[video]`` (limits included); the command line may name another folder."""
        from models.valley.model import load_valley

        c = self.config.video
        limits = Limits(max_seconds=c.max_minutes * 60, max_side=c.max_side, decode_seconds=c.decode_seconds)
        return load_valley(checkpoint or c.checkpoint, runtime or c.runtime, frames=c.frames, template=c.template,
                           vision_dtype=c.vision_dtype, limits=limits, n_threads=self.config.llm.n_threads)

    @cached_property
    def valley(self) -> "Valley":
        return self.load_valley()

    @cached_property
    def video(self) -> VideoDesk:
        c = self.config.video
        jobs = None
        if c.queue == "redis":
            from core.video_redis import RedisJobs

            jobs = RedisJobs.connect(c)
        # on Redis a worker elsewhere posts the description: this process never sees it to comment on
        return VideoDesk(c, lambda: self.valley, self.data_dir / "video-tmp",
                         None if jobs else self._comment_on_clip, metrics=self.metrics, jobs=jobs)

    @cached_property
    def persona(self) -> PersonaEngine:
        return PersonaEngine(self.library, self.history, self.settings, self.llm, self.config.persona, self.metrics)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        c = self.config
        dispatcher = Dispatcher(self, Access(frozenset(c.bot.owners), frozenset(c.bot.admins), self.settings),
                                c.dispatch.lane_depth, c.dispatch.model_slots,
                                chat_mode=lambda key: self.settings.get(key.chat, "mode") or "mention",
                                rate=RateLimiter(c.dispatch.user_rate_per_minute, c.dispatch.user_burst),
                                metrics=self.metrics)
        dispatcher.observers.append(self.factcheck.observe)
        dispatcher.add_route(Route(0, "commands", lambda ctx: ctx.message.command is not None, self._command))
        dispatcher.add_route(Route(5, "oversized videos", lambda ctx: any(self._oversized(ctx)), self._refuse,
                                   block=False))
        dispatcher.add_route(Route(10, "videos", lambda ctx: self.video.video_of(ctx) is not None,
                                   self.video.on_video))
        dispatcher.add_route(Route(20, "questions about a clip", self.video.is_followup, self.video.on_followup))
        dispatcher.add_route(Route(100, "persona", lambda ctx: True, self._chat))
        return dispatcher

    async def _command(self, ctx: Context) -> None:
        name, args = ctx.message.command  # type: ignore[misc]

        def audit(cmd, rest: str, outcome: str) -> None:
            self.audit.record(ctx.message, cmd.path, rest, outcome)

        try:
            answer = await self.commands.run(ctx, name, args, audit)
        except (CharacterError, ModelFileError, StoreError, AttachmentError, FetchError, DataError) as e:
            answer = str(e)
        if answer:
            await ctx.say(answer)

    @staticmethod
    def _oversized(ctx: Context) -> list[Attachment]:
        return [a for a in ctx.message.attachments if a.kind is AttachmentKind.VIDEO and a.too_large]

    async def _refuse(self, ctx: Context) -> None:
        for attachment in self._oversized(ctx):
            await ctx.say(attachment.refusal())

    async def _chat(self, ctx: Context) -> None:
        try:
            await self.persona.reply(ctx)
        except (CharacterError, StoreError) as e:
            await ctx.say(str(e))
        except LLMUnavailable as e:
            log.warning("%s", e)
            await ctx.fail("I can't reach my language model right now; please try again in a minute.")

    async def _comment_on_clip(self, ctx: Context, description: str) -> None:
        """The chat's character says something about a clip, in its own voice (``video.comment``)."""
        text = f"(I just shared a video clip. It shows: {description}) What do you make of it?"
        await self._chat(Context(replace(ctx.message, text=text), ctx.replier, ctx.level, self))

    def load_character(self, path: str | Path, name: str | None = None, progress: bool = False,
                       source_path: Path | None = None, url: str | None = None) -> tuple[LoadResult, str]:
        """Read a character package in any supported format and load it (atomically).

        ``source_path`` is where the file is kept, when that is not ``path`` (an upload being
        staged); ``url`` is where a reload fetches it again.
        """
        imported = read_character(path, name, column_name(self.embedder.name), self.embedder.dim)
        source = {"path": str(source_path or Path(path).expanduser().resolve()), "name": name}
        if url:
            source["url"] = url
        cid = imported.character.id
        previous = self.library.source_of(cid).get("path")
        if previous and previous != source["path"]:
            raise CharacterError(f"a character named '{cid}' is already loaded from {previous}; load this one "
                                 f"with --name NAME, or remove '{cid}' first")
        result = self.library.load(imported.character, progress=progress, vectors=imported.vectors, source=source)
        return result, imported.note

    async def load_upload(self, attachment: Attachment, name: str | None) -> tuple[LoadResult, str]:
        """Load a character file sent in chat."""
        return await self._load_bytes(attachment.filename, await attachment.read(), name)

    async def load_url(self, url: str, name: str | None) -> tuple[LoadResult, str]:
        """Load a character from a link, through the safe fetcher (public addresses, size and time limits)."""
        c = self.config.fetch
        fetcher = SafeFetcher(c.deadline, int(c.max_character_mb * 1_000_000), c.allow)
        fetched = await fetcher.get(url, CHARACTER_TYPES)
        return await self._load_bytes(URL(fetched.url).name or "character", fetched.body, name, url)

    async def _load_bytes(self, filename: str, data: bytes, name: str | None,
                          url: str | None = None) -> tuple[LoadResult, str]:
        """Load a character file that came over the network. It is kept in `uploads/` (for
        /character reload) only once it has loaded; a failed load leaves the previous one in place."""
        uploads = self.data_dir / "uploads"
        uploads.mkdir(exist_ok=True)
        filename = re.sub(r"[^\w.-]", "_", Path(filename).name).lstrip(".") or "character"
        staging = Path(tempfile.mkdtemp(dir=uploads, prefix=".incoming-"))
        try:
            incoming = staging / filename
            incoming.write_bytes(data)
            loaded = await asyncio.to_thread(self.load_character, incoming, name, source_path=uploads / filename,
                                             url=url)
            os.replace(incoming, uploads / filename)
            return loaded
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def export_character(self, character_id: str, out: Path, format: str) -> int:
        """Write a character as a V2 card (JSON) or a ChatHaruhi role jsonl with this embedder's
        vectors; returns the story count."""
        character, _ = self.library.character(character_id)
        if format == "card-v2":
            out.write_text(json.dumps(character_to_card(character), ensure_ascii=False, indent=2), encoding="utf-8")
        else:
            vectors = self.embedder.encode([s.text for s in character.stories])
            write_jsonl(character, vectors, column_name(self.embedder.name), out)
        return len(character.stories)

    def ensure_default_character(self) -> None:
        """Load the bundled demo character when the default one is not in the library yet."""
        cid = self.config.persona.default_character
        if cid in self.library.ids():
            return
        folder = DEMO_CHARACTERS / cid
        if not folder.is_dir():
            raise CharacterError(f"the default character '{cid}' is not loaded; load it with "
                                 f"`greenroom character load PATH --name {cid}`")
        log.info("loading the bundled character %s", cid)
        self.load_character(folder, progress=sys.stderr.isatty())

    def close(self) -> None:
        if "library" in self.__dict__:
            self.library.close()
        self.db.close()
