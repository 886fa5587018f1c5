"""`greenroom worker video`: runs video jobs from the Redis queue and posts the answers itself.

One process, one job at a time (RQ's SimpleWorker: the model stays loaded between jobs; start more
processes for more at once). A job's ``video.job_seconds`` is its time limit; a worker killed mid-job
holds it only until then (plus a few seconds), when another worker's maintenance re-queues it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from rq import SimpleWorker

from greenroom.core.adapter import Replier, SentRef
from greenroom.core.config import Config, ConfigError, VideoSection
from greenroom.core.events import Attachment, AttachmentKind, ConversationKey
from greenroom.core.video import ClipForgotten, Job, VideoDesk
from greenroom.core.video_redis import DAY, PREFIX, RedisJobs

# Where a job's answer goes: a replier for the platform message named by its address (`bots.remote`).
ReplierFor = Callable[[dict[str, Any]], AbstractAsyncContextManager[Replier]]

log = logging.getLogger(__name__)

GRACE_SECONDS = 5  # after a job's time limit, before a dead worker's job is taken back
WORKER_TTL = 20  # the worker's own registration; it also bounds each wait for a job (TTL - 15 s)

_worker: WorkerState | None = None  # set by run_worker in the worker process


class WorkerState:
    """What jobs in this worker process share: the desk (the model loads on the first job) and where
    answers go."""

    def __init__(self, desk: VideoDesk, jobs: RedisJobs, replier_for: ReplierFor) -> None:
        self.desk = desk
        self.jobs = jobs
        self.replier_for = replier_for


class VideoWorker(SimpleWorker):
    """RQ's in-process worker; a started job is held for its time limit plus a grace, not RQ's fixed minute."""

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        return int(max((job.timeout or 0) - working_time, 0)) + GRACE_SECONDS


def perform(spec: dict[str, Any]) -> str:
    """The job function RQ runs (by name: ``greenroom.core.video_worker.perform``)."""
    if _worker is None:
        raise RuntimeError("video jobs run in `greenroom worker video`")
    return asyncio.run(_perform(_worker, spec))


def _stored_clip(state: WorkerState, spec: dict[str, Any]) -> Attachment:
    key = PREFIX + "clip:" + spec["id"]

    async def fetch() -> bytes:
        data = await asyncio.to_thread(state.jobs.redis.get, key)
        if data is None:
            raise ClipForgotten()
        return data  # type: ignore[return-value]  # bytes: the client does not decode replies

    clip = spec["clip"]
    kind = AttachmentKind(clip.get("kind", "video"))
    return Attachment(kind, clip["filename"], clip["size"], clip["size"], fetch=fetch)


async def _perform(state: WorkerState, spec: dict[str, Any]) -> str:
    done = PREFIX + "done:" + spec["id"]
    if state.jobs.redis.exists(done):  # finished before, and its worker died before RQ recorded it
        return "answered before"
    async with state.replier_for(spec["address"]) as replier:
        job = Job(
            ConversationKey(*spec["key"]),
            spec["message_id"],
            replier,
            spec["question"],
            _stored_clip(state, spec) if spec["clip"] else None,
            SentRef(spec["status"]) if spec["status"] else None,
            shared_by=spec.get("shared_by", ""),
        )
        outcome = await state.desk.handle(job)
    state.jobs.redis.set(done, outcome, ex=DAY)
    state.jobs.redis.delete(PREFIX + "clip:" + spec["id"])
    log.info("video job", extra={"job": {"job": spec["id"], "conversation": str(job.key), "outcome": outcome}})
    return outcome


def check_worker_config(c: VideoSection) -> None:
    """What `greenroom worker video` needs before it connects."""
    if c.queue != "redis":
        raise ConfigError('`greenroom worker video` needs video.queue = "redis"')
    if not c.enabled:
        raise ConfigError("`greenroom worker video` needs a video model: [video] backend and its model (docs/video.md)")


def run_worker(config: Config, desk: VideoDesk, jobs: RedisJobs, replier_for: ReplierFor, burst: bool = False) -> int:
    """Work until SIGTERM/SIGINT (the job in hand is finished first); ``burst``: until the queue is empty."""
    global _worker
    c = config.video
    jobs.ping()  # QueueDown names the address
    _worker = WorkerState(desk, jobs, replier_for)
    worker = VideoWorker(
        [jobs.queue],
        connection=jobs.redis,
        worker_ttl=WORKER_TTL,
        maintenance_interval=max(1, min(60, int(c.job_seconds // 10))),
    )
    log.info("video worker %s on %s", worker.name, jobs.queue.name)
    worker.work(burst=burst, logging_level=config.bot.log_level.upper())
    return 0
