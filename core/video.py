"""Clips in chat: a bounded job queue (in-process, or on Redis for workers on other machines) so text
chat never waits for it, progress notes for long jobs, and follow-up questions about the last clip
of a conversation."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from greenroom.core.adapter import Replier, SentRef
from greenroom.core.commands import Context
from greenroom.core.config import VideoSection
from greenroom.core.events import Attachment, AttachmentKind, ConversationKey
from greenroom.core.metrics import Metrics
from greenroom.core.reply import split_text
from greenroom.errors import UserError
from greenroom.models.files import ModelFileError
from greenroom.models.llm import LLMUnavailable
from greenroom.models.valley.errors import CheckpointError
from greenroom.models.video.answer import DEFAULT_QUESTION, Answer, Decoding

log = logging.getLogger(__name__)

OFF = (
    "Video description is off on this bot. An admin can turn it on in bot.toml's `[video]` section: a "
    'vision-language model (backend = "llama_cpp" or "openai") or a Valley checkpoint (docs/video.md).'
)
BUSY = "I'm already watching {n} clips; please send this one again in a few minutes."
CLOSING = "I'm restarting and could not finish watching your clip; please send it again in a minute."
FOLLOWUP = "Looking at the clip again…"
FORGOTTEN = "I no longer have that clip; please send it again."
PHOTO_QUESTION = "Describe this photo concisely."
# a message that talks about the clip (in the follow-up window); anything else goes to the character
ABOUT_CLIP = re.compile(
    r"\b(videos?|clips?|footage|frames?|photos?|pictures?|images?)\b|视频|片子|影片|画面|镜头|照片|图片|这张图",
    re.I,
)
NOTE_CHARS = 1200  # the most of a clip's description and answers the character is shown


class VideoModel(Protocol):
    """A video backend (Valley, or a vision-language model in llama.cpp or on a server): clips in,
    answers out. ``clip`` raises VideoError for bad input; a clip is the backend's own object."""

    runtime: str

    def clip(self, path: str) -> Any: ...

    def ask(self, clip: Any, question: str, turns: list[tuple[str, str]], decoding: Decoding) -> Answer: ...


@dataclass
class ClipThread:
    """The last described clip (or photo) of a conversation, with the questions and answers about
    it, who shared it and when (wall-clock seconds)."""

    clip: Any
    turns: list[tuple[str, str]]
    shared_by: str = ""
    at: float = 0.0
    photo: bool = False


@dataclass
class Recent:
    """What the bot process knows for routing: its messages about the clip, and when it last spoke."""

    message_ids: set[str]
    at: float


@dataclass
class Job:
    key: ConversationKey
    message_id: str
    replier: Replier
    question: str
    attachment: Attachment | None = None  # None: a follow-up about the conversation's clip
    status: SentRef | None = None
    ctx: Context | None = None  # in-process jobs: for the character's comment
    shared_by: str = ""  # who sent the clip (the character is told)
    stage: str = "waiting for my turn"
    done: asyncio.Event = field(default_factory=asyncio.Event)


class QueueDown(UserError):
    """The job queue cannot be reached (Redis down); worded for the user."""


class ClipForgotten(UserError):
    """A follow-up question about a clip that is no longer kept."""

    def __init__(self) -> None:
        super().__init__(FORGOTTEN)


class ThreadStore(Protocol):
    """Clip threads by conversation: in this process, or on Redis for workers elsewhere."""

    def get(self, key: ConversationKey) -> ClipThread | None: ...

    def summary(self, key: ConversationKey) -> ClipThread | None:
        """The thread without its clip (cheap: every persona turn reads it)."""

    def put(self, key: ConversationKey, thread: ClipThread) -> None: ...


class LocalThreads(dict):
    """Clip threads in this process; one older than ``keep`` seconds is dropped when another is put."""

    def __init__(self, keep: float) -> None:
        super().__init__()
        self.keep = keep

    def summary(self, key: ConversationKey) -> ClipThread | None:
        return self.get(key)

    def put(self, key: ConversationKey, thread: ClipThread) -> None:
        for old in [k for k, t in self.items() if thread.at - t.at > self.keep]:
            del self[old]
        self[key] = thread


class VideoDesk:
    """Takes clips and questions about them from the dispatcher, queues them, and (in a worker, or
    here with the in-process queue) answers them."""

    def __init__(
        self,
        config: VideoSection,
        load: Callable[[], VideoModel],
        tmp_dir: Path,
        comment: Callable[[Context, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        jobs: JobQueue | None = None,
        threads: ThreadStore | None = None,
    ) -> None:
        self.config = config
        self.load = load
        self.tmp_dir = tmp_dir
        self.comment = comment if config.comment else None
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.decoding = Decoding(config.max_new_tokens, config.temperature)
        keep = max(config.followup_minutes, config.remember_minutes) * 60
        self.threads: ThreadStore = threads if threads is not None else LocalThreads(keep)
        self.recent: dict[ConversationKey, Recent] = {}
        self.jobs = jobs or LocalJobs(self)
        self.metrics.watch_queue("video", self.jobs.depth_now)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def kinds(self) -> tuple[AttachmentKind, ...]:
        """What this desk takes: clips, and photos too while a video model is configured (else a
        photo is the character's, as any message)."""
        return (AttachmentKind.VIDEO, AttachmentKind.IMAGE) if self.enabled else (AttachmentKind.VIDEO,)

    def video_of(self, ctx: Context) -> Attachment | None:
        """The clip or photo of a message (one that is not too large to fetch)."""
        return next((a for a in ctx.message.attachments if a.kind in self.kinds and not a.too_large), None)

    def oversized(self, ctx: Context) -> list[Attachment]:
        """The message's clips and photos that are too large to fetch."""
        return [a for a in ctx.message.attachments if a.kind in self.kinds and a.too_large]

    def is_followup(self, ctx: Context) -> bool:
        """A reply to a description or answer; or, within the window, a message that mentions the clip.
        Anything else is the character's."""
        message = ctx.message
        recent = self.recent.get(message.key)
        if recent is None or message.command is not None or not message.text.strip():
            return False
        if message.reply_to_id is not None:
            return message.reply_to_id in recent.message_ids
        return self.clock() - recent.at <= self.config.followup_minutes * 60 and bool(ABOUT_CLIP.search(message.text))

    def note(self, key: ConversationKey) -> str:
        """What the conversation's character knows of the last clip shared here (within
        ``video.remember_minutes``): its description and the answers about it; "" when none."""
        try:
            thread = self.threads.summary(key)
        except Exception as e:  # the thread store is down: the character talks without it
            log.warning("clip thread of %s not read: %s: %s", key, type(e).__name__, e)
            return ""
        if thread is None or not thread.turns or time.time() - thread.at > self.config.remember_minutes * 60:
            return ""
        what = "a photo" if thread.photo else "a video clip"
        who = f"{thread.shared_by} shared" if thread.shared_by else "Someone shared"
        lines = [f"{who} {what} in this chat. A video model described it: {thread.turns[0][1]}"]
        lines += [f"Asked about it: {q} Answer: {a}" for q, a in thread.turns[1:]]
        text = "\n".join(lines)
        if len(text) > NOTE_CHARS:
            text = text[: NOTE_CHARS - 1] + "…"
        return f"({text})"

    def _remember(self, job: Job, sent: SentRef) -> None:
        """The bot's messages about the conversation's clip (a new clip starts afresh), and when."""
        now, window = self.clock(), self.config.followup_minutes * 60
        self.recent = {k: r for k, r in self.recent.items() if now - r.at <= window}  # past the window: gone
        recent = self.recent.get(job.key)
        if recent is None or job.attachment is not None:
            recent = self.recent[job.key] = Recent(set(), 0.0)
        recent.message_ids.update({job.message_id, sent.id})
        recent.at = now

    async def on_video(self, ctx: Context) -> None:
        if not self.enabled:
            await ctx.say(OFF)
            return
        attachment = self.video_of(ctx)
        assert attachment is not None  # the route matched it
        photo = attachment.kind is AttachmentKind.IMAGE
        question = ctx.message.text.strip() or (PHOTO_QUESTION if photo else DEFAULT_QUESTION)
        status = "Looking at your photo…" if photo else "Watching your clip…"
        await self._submit(self._job(ctx, question, attachment), status)

    async def on_followup(self, ctx: Context, question: str = "") -> None:
        """A question about the conversation's last clip (``question``: from `/video ask`)."""
        # a remote worker edits its answer into a status line: the bot knows the answer's message id
        question = question or ctx.message.text.strip()
        await self._submit(self._job(ctx, question), FOLLOWUP if self.jobs.remote else None)

    @staticmethod
    def _job(ctx: Context, question: str, attachment: Attachment | None = None) -> Job:
        m = ctx.message
        return Job(m.key, m.id, ctx.replier, question, attachment, ctx=ctx, shared_by=m.author.display_name)

    async def _submit(self, job: Job, status: str | None) -> None:
        try:
            if not await self.jobs.claim(job):
                log.info("video: message %s in %s was queued before; not again", job.message_id, job.key)
                return
            ahead = await self.jobs.depth()
            if ahead >= self.config.queue_size:
                self.metrics.video_jobs.labels("busy").inc()
                await job.replier.send(BUSY.format(n=ahead))
                return
            if status is not None:
                job.status = await job.replier.send(status + (f" ({ahead} ahead of it)" if ahead else ""))
            await self.jobs.put(job)
        except QueueDown as e:
            log.error("video queue: %s", e)
            self.metrics.video_jobs.labels("queue down").inc()
            await self.tell(job, f"Video description is unavailable right now: {e}")
            return
        except UserError as e:
            await self.tell(job, str(e))
            return
        if self.jobs.remote and job.status is not None:
            self._remember(job, job.status)

    async def idle(self) -> None:
        """Wait until every queued job is answered (in-process queue)."""
        await self.jobs.idle()

    async def handle(self, job: Job) -> str:
        """Run one job and answer its sender, whatever happens; returns the outcome (for metrics)."""
        try:
            await self._run(job)
            outcome = "answered"
        except asyncio.CancelledError:
            self.metrics.video_jobs.labels("cut off").inc()
            await self.tell(job, CLOSING)
            raise
        except LLMUnavailable as e:
            log.error("video model unavailable: %s", e.detail)
            outcome = "unavailable"
            await self.tell(job, f"Video description is unavailable right now: {e}")
        except (CheckpointError, ModelFileError) as e:
            log.error("video model unavailable: %s", e)
            outcome = "unavailable"
            await self.tell(job, f"Video description is unavailable right now: {e}")
        except UserError as e:
            outcome = "refused"
            await self.tell(job, str(e))
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("video job failed (error id %s) in %s", error_id, job.key)
            outcome = "failed"
            await self.tell(job, f"Sorry, something went wrong while I was watching that clip (error id {error_id}).")
        self.metrics.video_jobs.labels(outcome).inc()
        return outcome

    async def _run(self, job: Job) -> None:
        progress = asyncio.create_task(self._progress(job))
        try:
            model = await asyncio.to_thread(self.load)
            if job.attachment is None:
                thread = self.threads.get(job.key)
                if thread is None:
                    raise ClipForgotten()
                job.stage = "thinking about your question"
                answer = await asyncio.to_thread(model.ask, thread.clip, job.question, thread.turns, self.decoding)
                thread.turns.append((job.question, answer.text))
            else:
                job.stage = "downloading it"
                data = await job.attachment.read()
                job.stage = "looking at the frames"
                clip = await asyncio.to_thread(self._clip, model, data, job.attachment.filename)
                job.stage = "writing the description"
                answer = await asyncio.to_thread(model.ask, clip, job.question, [], self.decoding)
                photo = job.attachment.kind is AttachmentKind.IMAGE
                thread = ClipThread(clip, [(job.question, answer.text)], job.shared_by, time.time(), photo)
            self.threads.put(job.key, thread)
            sent = await self.tell(job, answer.text or "…")
            if not self.jobs.remote:
                self._remember(job, sent)
        finally:
            job.done.set()
            progress.cancel()
        if job.attachment is not None and self.comment is not None and job.ctx is not None:
            await self.comment(job.ctx, answer.text)

    def _clip(self, model: VideoModel, data: bytes, filename: str) -> Any:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, suffix=Path(filename).suffix[:8]) as f:
            f.write(data)
            f.flush()
            return model.clip(f.name)

    async def _progress(self, job: Job) -> None:
        """Every ``progress_seconds`` a job runs, say how far it got (in place of the status line)."""
        if not self.config.progress_seconds or job.status is None:
            return
        while not job.done.is_set():
            try:
                await asyncio.wait_for(job.done.wait(), self.config.progress_seconds)
            except TimeoutError:
                await job.replier.edit(job.status, f"Still watching your clip: {job.stage}…")

    async def tell(self, job: Job, text: str) -> SentRef:
        """The answer replaces the status line when there is one; what does not fit follows."""
        parts = split_text(text, job.replier.max_len)
        if job.status is None:
            sent = await job.replier.send(parts[0])
        else:
            await job.replier.edit(job.status, parts[0])
            sent = job.status
        for part in parts[1:]:
            await job.replier.send(part)
        return sent

    async def close(self) -> None:
        await self.jobs.close()


class JobQueue(Protocol):
    remote: bool

    async def claim(self, job: Job) -> bool:
        """False for a message queued before."""

    async def depth(self) -> int: ...

    def depth_now(self) -> int:
        """The depth for the metrics gauge (-1 when unknown)."""

    async def put(self, job: Job) -> None: ...

    async def idle(self) -> None: ...

    def ping(self) -> None: ...

    async def close(self) -> None: ...


class LocalJobs:
    """An asyncio queue with ``video.workers`` tasks in this process; one job at a time per conversation."""

    remote = False

    def __init__(self, desk: VideoDesk) -> None:
        self.desk = desk
        self._queue: asyncio.Queue[Job] | None = None
        self._workers: list[asyncio.Task] = []
        self._locks: dict[ConversationKey, asyncio.Lock] = {}

    async def claim(self, job: Job) -> bool:
        return True

    async def depth(self) -> int:
        return self.depth_now()

    def depth_now(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def put(self, job: Job) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.desk.config.workers)]
        self._queue.put_nowait(job)

    def ping(self) -> None:
        return None

    async def idle(self) -> None:
        if self._queue is not None:
            await self._queue.join()

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                async with self._locks.setdefault(job.key, asyncio.Lock()):
                    await self.desk.handle(job)
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        """Stop the workers; a job cut off, and each still waiting, is told to send its clip again."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            await self.desk.tell(self._queue.get_nowait(), CLOSING)
