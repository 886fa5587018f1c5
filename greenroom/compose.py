"""The composition root: the one place that builds the services of a process from its configuration
(configuration -> stores -> models -> services -> handlers -> dispatcher -> adapters).

Everything is built on first use: a command that needs no model never loads one.
Handlers, commands and platform adapters come from plugins (`core.plugins`); each is given the
services it uses when it is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property, partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from greenroom.core.adapter import Adapter
from greenroom.core.characters import Characters
from greenroom.core.commands import Access, CommandRegistry, Context
from greenroom.core.config import ENV_PREFIX, Config, VideoSection, secret
from greenroom.core.dispatch import Dispatcher
from greenroom.core.factcheck import FactCheck
from greenroom.core.health import probe
from greenroom.core.lorebooks import Lorebooks
from greenroom.core.metrics import Metrics
from greenroom.core.persona import PersonaEngine
from greenroom.core.plugins import ADAPTERS, COMMANDS, HANDLERS, AdapterHost, load_plugins
from greenroom.core.ratelimit import RateLimiter
from greenroom.core.video import VideoDesk, VideoModel
from greenroom.memory.audit import AuditLog
from greenroom.memory.db import Database, database_url, ensure_writable
from greenroom.memory.history import History
from greenroom.memory.library import Library
from greenroom.memory.long_term import LongTermMemory
from greenroom.memory.lorebook_store import LorebookStore
from greenroom.memory.model_choice import ModelChoice
from greenroom.memory.settings import Settings
from greenroom.memory.store import Cluster, EdgeStore, MemoryStore, ServerStore
from greenroom.memory.turn_order import SharedTurnOrder
from greenroom.memory.uploads import Uploads
from greenroom.memory.verdicts import VerdictCache
from greenroom.models.embedder import Embedder
from greenroom.models.fakenews.checker import LinkChecker
from greenroom.models.fakenews.detector import load_detector
from greenroom.models.fakenews.fetch import SafeFetcher
from greenroom.models.files import ModelFileError
from greenroom.models.llm import LLM, LlamaCppLLM
from greenroom.models.video.frames import Limits

if TYPE_CHECKING:
    from greenroom.models.valley.model import Valley

log = logging.getLogger(__name__)
MODEL_VARIABLE = f"{ENV_PREFIX}LLM__MODEL"


class Greenroom:
    """The services of one bot process (or one command-line command). ``embedder`` and ``llm``
    replace the configured models (tests share loaded ones)."""

    def __init__(self, config: Config, embedder: Embedder | None = None, llm: LLM | None = None) -> None:
        self.config = config
        self.data_dir = ensure_writable(config.data_path())
        db = config.database
        self.db = Database(database_url(db.url, self.data_dir, secret(db.password_env)), self.data_dir)
        self.history = History(self.db)
        self.settings = Settings(self.db)
        self.audit = AuditLog(self.db)
        self.metrics = Metrics()
        if embedder is not None:
            self.embedder = embedder
        if llm is not None:
            self.llm = llm
        self._wired: tuple[CommandRegistry, Dispatcher] | None = None
        self._library: Library | None = None
        self._persona: PersonaEngine | None = None

    # ----- stores and models ---------------------------------------------------------------------

    @cached_property
    def store(self) -> MemoryStore:
        c = self.config.memory
        if c.qdrant_url:
            store = ServerStore.connect(
                c.qdrant_url,
                secret(c.qdrant_api_key_env),
                self.embedder.name,
                self.embedder.dim,
                Cluster(c.shard_number, c.replication_factor, c.on_disk_payload),
            )
            adopted = store.adopt_legacy()
            if adopted:
                log.info("moved %d per-version collection(s) into the shared collection", len(adopted))
            return store
        return EdgeStore(self.data_dir / "qdrant")

    @cached_property
    def embedder(self) -> Embedder:
        c = self.config.embedder
        return Embedder(c.model, c.device, c.batch_size, c.name)

    @cached_property
    def llm(self) -> LLM:
        c = self.config.llm
        if c.backend == "openai":
            from greenroom.models.llm.openai import OpenAIChatLLM

            return OpenAIChatLLM(
                c.base_url,
                c.server_model or "default",
                c.tokenizer,
                secret(c.api_key_env) or "",
                c.n_ctx,
                c.timeout,
                c.retries,
                slots=c.slots,
            )
        model, sha256, _ = self.language_model()
        return LlamaCppLLM(
            model,
            sha256,
            n_ctx=c.n_ctx,
            n_threads=c.n_threads,
            seed=c.seed,
            kernels=c.kernels,
            kv_cache_mb=c.kv_cache_mb,
        )

    @cached_property
    def model_choice(self) -> ModelChoice:
        return ModelChoice(self.settings)

    def language_model(self) -> tuple[str, str, str]:
        """The GGUF to load, its sha256, and where that came from: `greenroom model use` (kept in the
        database) beats bot.toml's `llm.model`/`llm.sha256`; ``GREENROOM__LLM__MODEL`` beats both."""
        c = self.config.llm
        if MODEL_VARIABLE in os.environ:
            return c.model, c.sha256, MODEL_VARIABLE
        chosen = self.model_choice.get()
        if chosen:
            return chosen[0], chosen[1], "greenroom model use"
        return c.model, c.sha256, "the configuration"

    def load_valley(self, checkpoint: str | None = None, runtime: str | None = None) -> Valley:
        """Valley as configured in ``[video]`` (limits included); the command line may name another folder."""
        from greenroom.models.valley.model import load_valley

        c = self.config.video
        limits = Limits(max_seconds=c.max_minutes * 60, max_side=c.max_side, decode_seconds=c.decode_seconds)
        return load_valley(
            checkpoint or c.checkpoint,
            runtime or c.runtime,
            frames=c.frames,
            template=c.template,
            vision_dtype=c.vision_dtype,
            limits=limits,
            n_threads=self.config.llm.n_threads,
            kernels=self.config.llm.kernels,
        )

    def load_video_model(self, c: VideoSection | None = None) -> VideoModel:
        """The video backend ``[video]`` configures (the command line may pass it changed)."""
        c = c or self.config.video
        backend = c.backend
        limits = Limits(max_seconds=c.max_minutes * 60, max_side=c.max_side, decode_seconds=c.decode_seconds)
        if backend == "llama_cpp":
            from greenroom.models.vlm.llama_cpp import LlamaCppVision

            if not c.model:
                raise ModelFileError('video.backend is "llama_cpp" but video.model is empty (a GGUF and its mmproj)')
            return LlamaCppVision(
                c.model,
                c.mmproj,
                sha256=c.sha256,
                n_ctx=c.n_ctx,
                n_threads=self.config.llm.n_threads,
                kernels=self.config.llm.kernels,
                frames=c.frames,
                side=c.frame_side,
                limits=limits,
                cache_mb=c.cache_mb,
            )
        if backend == "openai":
            from greenroom.models.vlm.openai import OpenAIVision

            return OpenAIVision(
                c.base_url,
                c.server_model,
                secret(c.api_key_env) or "",
                send=c.send,
                timeout=c.timeout,
                retries=c.server_retries,
                frames=c.frames,
                side=c.frame_side,
                limits=limits,
                n_ctx=c.n_ctx,
            )
        return self.load_valley(c.checkpoint, c.runtime)

    @cached_property
    def video_model(self) -> VideoModel:
        return self.load_video_model()

    # ----- services ------------------------------------------------------------------------------

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = Library(self.db, self.store, self.embedder, self.llm.count_tokens, self.llm.tokenizer_id)
        return self._library

    @cached_property
    def characters(self) -> Characters:
        return Characters(
            self.library,
            self.embedder,
            self.settings,
            self.config.fetch,
            Uploads(self.db),
            self.config.persona.default_character,
        )

    @cached_property
    def lorebook_store(self) -> LorebookStore:
        return LorebookStore(self.db)

    @cached_property
    def lorebooks(self) -> Lorebooks:
        return Lorebooks(self.lorebook_store, self.db, self.config.fetch)

    @cached_property
    def long_term(self) -> LongTermMemory:
        """Each conversation's memories: rows in the database, vectors in the memory store."""
        return LongTermMemory(self.db, self.store, lambda: self.embedder)

    @property
    def persona(self) -> PersonaEngine:
        if self._persona is None:
            self._persona = PersonaEngine(
                self.library,
                self.history,
                self.settings,
                self.llm,
                self.config.persona,
                self.metrics,
                self.long_term,
                self.video.note if self.config.video.enabled else None,
                ZoneInfo(self.config.bot.timezone) if self.config.bot.timezone else None,
                lorebooks=self.lorebook_store,
            )
        return self._persona

    @property
    def models_loaded(self) -> bool:
        """Whether the chat is ready to answer (readiness says "still loading" until then)."""
        return self._persona is not None

    @cached_property
    def link_checker(self) -> LinkChecker:
        c = self.config
        fetcher = SafeFetcher(c.fetch.deadline, int(c.fetch.max_article_mb * 1_000_000), c.fetch.allow)
        return LinkChecker(
            fetcher,
            lambda: load_detector(c.factcheck.model or None, lambda: self.embedder),
            VerdictCache(self.db, c.factcheck.cache_minutes * 60),
            c.factcheck.threshold,
        )

    @cached_property
    def factcheck(self) -> FactCheck:
        return FactCheck(lambda: self.link_checker, self.settings, self.config.factcheck, self.metrics)

    @cached_property
    def video(self) -> VideoDesk:
        c = self.config.video
        if c.queue == "redis":
            from greenroom.core.video_redis import RedisJobs, RedisThreads

            # a worker elsewhere posts the description: this process never sees it to comment on, but
            # reads the clip's thread from Redis for the character
            jobs = RedisJobs.connect(c)
            threads = RedisThreads.for_config(jobs.redis, c)
            return VideoDesk(
                c,
                lambda: self.video_model,
                self.data_dir / "video-tmp",
                metrics=self.metrics,
                jobs=jobs,
                threads=threads,
            )
        return VideoDesk(
            c, lambda: self.video_model, self.data_dir / "video-tmp", self._comment_in_lane, metrics=self.metrics
        )

    async def _comment_in_lane(self, ctx: Context, description: str) -> None:
        """The character's comment on a described clip waits its turn in the conversation's lane."""
        persona = self.persona
        comment = Context(replace(ctx.message, text=persona.comment_text(description)), ctx.replier, ctx.level)
        await self.dispatcher.enqueue(comment, persona.reply)

    # ----- handlers, dispatcher, adapters ---------------------------------------------------------

    def _wire(self) -> tuple[CommandRegistry, Dispatcher]:
        """The command registry and the dispatcher, filled by the command and handler plugins (once).
        Both exist before any plugin runs, so a plugin may take either."""
        if self._wired is None:
            c = self.config
            registry = CommandRegistry()
            dispatcher = Dispatcher(
                Access(frozenset(c.bot.owners), frozenset(c.bot.admins), self.settings),
                c.dispatch.lane_depth,
                chat_mode=lambda key: self.settings.get(key.chat, "mode") or "mention",
                rate=RateLimiter(c.dispatch.user_rate_per_minute, c.dispatch.user_burst),
                metrics=self.metrics,
                order=None if self.db.sqlite else SharedTurnOrder(self.db, c.dispatch.turn_stale_seconds),
            )
            self._wired = registry, dispatcher
            try:
                for factory in load_plugins(COMMANDS).values():
                    registry.include(factory(self))
                for factory in load_plugins(HANDLERS).values():
                    for handler in factory(self):
                        dispatcher.add(handler)
            except BaseException:
                self._wired = None
                raise
        return self._wired

    @property
    def commands(self) -> CommandRegistry:
        return self._wire()[0]

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher with every handler plugin's routes and observers."""
        return self._wire()[1]

    @property
    def host(self) -> AdapterHost:
        """What adapter plugins are built with."""
        return AdapterHost(self.dispatcher, self.commands, self.config)

    def platforms(self) -> dict[str, Callable[[AdapterHost], Adapter]]:
        """The enabled platforms by name (for the built-ins: their token is set); nothing is loaded yet."""
        enabled = {name: factory(self.config) for name, factory in load_plugins(ADAPTERS).items()}
        return {name: build for name, build in enabled.items() if build is not None}

    def adapters(self, platforms: dict[str, Callable[[AdapterHost], Adapter]] | None = None) -> list[Adapter]:
        """An adapter for each enabled platform, built on the loaded models."""
        host = self.host
        return [build(host) for build in (self.platforms() if platforms is None else platforms).values()]

    def warm(self) -> None:
        """Load what the first message needs: the default character and the chat's models."""
        self.characters.ensure_default()
        _ = self.persona

    async def readiness(self, adapters: Sequence[Adapter]) -> dict[str, str | None]:
        """Each check's failure (None when it passes): every adapter connected, memory store reachable,
        model loaded (and its server answering), video queue reachable when it is on Redis."""
        checks: dict[str, str | None] = {a.name: None if a.ready else "not connected" for a in adapters}
        checks["database"] = await probe(self.db.ping)
        checks["memory"] = await probe(lambda: self.store.names())
        checks["model"] = await probe(lambda: self._ping(self.llm)) if self.models_loaded else "still loading"
        if self.config.video.queue == "redis" and self.video.enabled:
            checks["video queue"] = await probe(self.video.jobs.ping)
        elif self.video.enabled and self.config.video.backend == "openai":
            checks["video model"] = await probe(lambda: self._ping(self.video_model))
        return checks

    @staticmethod
    def _ping(model: object) -> None:
        """A model on a server answers (in process: nothing to check)."""
        if ping := getattr(model, "ping", None):
            ping()

    def run_video_worker(self, burst: bool = False) -> int:
        """`greenroom worker video`: jobs from Redis, answers posted through the platform APIs."""
        from greenroom.bots.remote import remote_replier
        from greenroom.core.video_redis import RedisJobs, RedisThreads
        from greenroom.core.video_worker import check_worker_config, run_worker

        c = self.config.video
        check_worker_config(c)
        jobs = RedisJobs.connect(c)
        threads = RedisThreads.for_config(jobs.redis, c)
        desk = VideoDesk(
            c, lambda: self.video_model, self.data_dir / "video-tmp", metrics=self.metrics, jobs=jobs, threads=threads
        )
        return run_worker(self.config, desk, jobs, partial(remote_replier, self.config), burst=burst)

    def close(self) -> None:
        if "long_term" in self.__dict__:
            self.long_term.close()
        if self._library is not None:
            self._library.close()
        self.db.close()


def describe_plugins() -> dict[str, list[str]]:
    """The plugins installed in each group (for `greenroom plugins`)."""
    return {group: sorted(load_plugins(group)) for group in (ADAPTERS, HANDLERS, COMMANDS)}
