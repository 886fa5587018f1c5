"""Clips in chat: a bounded job queue with its own workers (text chat never waits for it), progress
notes for long jobs, and follow-up questions about the last clip of a conversation."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from core.commands import Context
from core.config import VideoSection
from core.events import Attachment, AttachmentError, AttachmentKind, ConversationKey
from core.reply import SentRef, split_text
from models.files import ModelFileError
from models.valley.errors import CheckpointError
from models.valley.generate import Decoding
from models.valley.prompt import DEFAULT_QUESTION
from models.video.frames import VideoError

if TYPE_CHECKING:
    from models.valley.model import Clip, Valley

log = logging.getLogger(__name__)

OFF = ("Video description is off on this bot. An admin can turn it on by pointing `[video] checkpoint` in "
       "bot.toml at a Valley checkpoint (README, \"Video description\").")
BUSY = "I'm already watching {n} clips; please send this one again in a few minutes."
CLOSING = "I'm restarting and could not finish watching your clip; please send it again in a minute."
ABOUT_CLIP = re.compile(r"\?\s*$|\b(video|clip|scene|frames?|descri\w*|fix|wrong|correct\w*|not\b.*\binstead)\b", re.I)


@dataclass
class ClipThread:
    """The last described clip of a conversation, with the questions and answers about it."""

    clip: "Clip"
    turns: list[tuple[str, str]]
    message_ids: set[str]
    at: float


@dataclass
class Job:
    ctx: Context
    question: str
    attachment: Attachment | None = None  # None: a follow-up about the conversation's clip
    status: SentRef | None = None
    stage: str = "waiting for my turn"
    done: asyncio.Event = field(default_factory=asyncio.Event)


class VideoDesk:
    """Takes clips and questions about them from the dispatcher and answers them from its own workers."""

    def __init__(self, config: VideoSection, load: Callable[[], "Valley"], tmp_dir: Path,
                 comment: Callable[[Context, str], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.load = load
        self.tmp_dir = tmp_dir
        self.comment = comment if config.comment else None
        self.clock = clock
        self.decoding = Decoding(config.max_new_tokens, config.temperature)
        self.threads: dict[ConversationKey, ClipThread] = {}
        self._queue: asyncio.Queue[Job] | None = None
        self._workers: list[asyncio.Task] = []
        self._locks: dict[ConversationKey, asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.config.checkpoint)

    @staticmethod
    def video_of(ctx: Context) -> Attachment | None:
        return next((a for a in ctx.message.attachments if a.kind is AttachmentKind.VIDEO and not a.too_large), None)

    def is_followup(self, ctx: Context) -> bool:
        """A reply to a description or answer; or, within the window, a question or a remark about the clip."""
        message = ctx.message
        thread = self.threads.get(message.key)
        if thread is None or message.command is not None or not message.text.strip():
            return False
        if message.reply_to_id is not None:
            return message.reply_to_id in thread.message_ids
        return self.clock() - thread.at <= self.config.followup_minutes * 60 and bool(ABOUT_CLIP.search(message.text))

    async def on_video(self, ctx: Context) -> None:
        if not self.enabled:
            await ctx.say(OFF)
            return
        await self._submit(Job(ctx, ctx.message.text.strip() or DEFAULT_QUESTION, self.video_of(ctx)),
                           "Watching your clip…")

    async def on_followup(self, ctx: Context) -> None:
        await self._submit(Job(ctx, ctx.message.text.strip()), None)

    async def _submit(self, job: Job, status: str | None) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self.config.queue_size)
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.config.workers)]
        if self._queue.full():
            await job.ctx.say(BUSY.format(n=self._queue.qsize()))
            return
        ahead = self._queue.qsize()
        if status is not None:
            job.status = await job.ctx.replier.send(status + (f" ({ahead} ahead of it)" if ahead else ""))
        self._queue.put_nowait(job)

    async def idle(self) -> None:
        """Wait until every queued job is answered."""
        if self._queue is not None:
            await self._queue.join()

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                async with self._locks.setdefault(job.ctx.message.key, asyncio.Lock()):
                    await self._run(job)
            except asyncio.CancelledError:
                await self._tell(job, CLOSING)
                raise
            except (VideoError, AttachmentError, CheckpointError, ModelFileError, ValueError) as e:
                if isinstance(e, (CheckpointError, ModelFileError)):
                    log.error("video model unavailable: %s", e)
                    e = f"Video description is unavailable right now: {e}"
                await self._tell(job, str(e))
            except Exception:
                log.exception("video job failed in %s", job.ctx.message.key)
                await self._tell(job, "Sorry, something went wrong while I was watching that clip.")
            finally:
                self._queue.task_done()

    async def _run(self, job: Job) -> None:
        progress = asyncio.create_task(self._progress(job))
        try:
            valley = await asyncio.to_thread(self.load)
            key = job.ctx.message.key
            if job.attachment is None:
                thread = self.threads[key]
                job.stage = "thinking about your question"
                answer = await asyncio.to_thread(valley.ask, thread.clip, job.question, thread.turns, self.decoding)
                thread.turns.append((job.question, answer.text))
                sent = await self._tell(job, answer.text or "…")
            else:
                job.stage = "downloading it"
                data = await job.attachment.read()
                job.stage = "looking at the frames"
                clip = await asyncio.to_thread(self._clip, valley, data, job.attachment.filename)
                job.stage = "writing the description"
                answer = await asyncio.to_thread(valley.ask, clip, job.question, [], self.decoding)
                thread = ClipThread(clip, [(job.question, answer.text)], {job.ctx.message.id}, 0.0)
                self.threads[key] = thread
                sent = await self._tell(job, answer.text or "…")
            thread.message_ids.add(sent.id)
            thread.at = self.clock()
        finally:
            job.done.set()
            progress.cancel()
        if job.attachment is not None and self.comment is not None:
            await self.comment(job.ctx, answer.text)

    def _clip(self, valley: "Valley", data: bytes, filename: str) -> "Clip":
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, suffix=Path(filename).suffix[:8]) as f:
            f.write(data)
            f.flush()
            return valley.clip(f.name)

    async def _progress(self, job: Job) -> None:
        """Every ``progress_seconds`` a job runs, say how far it got (in place of the status line)."""
        if not self.config.progress_seconds or job.status is None:
            return
        while not job.done.is_set():
            try:
                await asyncio.wait_for(job.done.wait(), self.config.progress_seconds)
            except TimeoutError:
                await job.ctx.replier.edit(job.status, f"Still watching your clip: {job.stage}…")

    async def _tell(self, job: Job, text: str) -> SentRef:
        """The answer replaces the status line when there is one; what does not fit follows."""
        parts = split_text(text, job.ctx.replier.max_len)
        if job.status is None:
            sent = await job.ctx.replier.send(parts[0])
        else:
            await job.ctx.replier.edit(job.status, parts[0])
            sent = job.status
        for part in parts[1:]:
            await job.ctx.replier.send(part)
        return sent

    async def close(self) -> None:
        """Stop the workers; a job cut off, and each still waiting, is told to send its clip again."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            await self._tell(job, CLOSING)
