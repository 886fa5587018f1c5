"""Video jobs on Redis through RQ: the bot process queues them, `greenroom worker video` processes (on
this or other machines, GPU or CPU) run them and post the answers through the platform APIs.

A job carries where to answer (the platform, chat and message, and the status line to edit), the
question, and for a new clip the clip's bytes under their own key. Each platform message becomes
one job (claimed by message id, so a message delivered twice is described once). A worker that dies
mid-job leaves it in RQ's started registry; once its time is up another worker's maintenance puts it
back on the queue (``video.retries`` times).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any

import numpy as np
import redis
from redis.typing import EncodableT
from rq import Queue, Retry

from greenroom.core.config import VideoSection, secret
from greenroom.core.events import ConversationKey
from greenroom.core.video import ClipThread, Job, QueueDown
from greenroom.models.vlm.clip import FramesClip

QUEUE = "greenroom-video"
PREFIX = "greenroom:video:"
DAY = 86400


def job_id(key: ConversationKey, message_id: str) -> str:
    """One job per platform message (RQ ids take letters, digits, - and _ only)."""
    return "video-" + hashlib.sha1(f"{key}|{message_id}".encode()).hexdigest()[:24]


def connect(config: VideoSection) -> redis.Redis:
    """A client (no connection is made until it is used: the bot starts even when Redis is down)."""
    return redis.Redis.from_url(
        config.redis_url, password=secret(config.redis_password_env), socket_connect_timeout=3, socket_timeout=30
    )


def where(config: VideoSection) -> str:
    """The Redis address for messages, without credentials."""
    return config.redis_url.rsplit("@", 1)[-1]


class RedisJobs:
    """The bot's side: claims, stores and queues jobs."""

    remote = True

    def __init__(self, client: redis.Redis, config: VideoSection) -> None:
        self.redis = client
        self.config = config
        self.queue = Queue(QUEUE, connection=client)

    @classmethod
    def connect(cls, config: VideoSection) -> RedisJobs:
        return cls(connect(config), config)

    def _down(self, e: Exception) -> QueueDown:
        return QueueDown(f"the video queue at {where(self.config)} cannot be reached ({e})")

    def ping(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as e:
            raise self._down(e) from None

    async def depth(self) -> int:
        try:
            return await asyncio.to_thread(lambda: self.queue.count)
        except redis.RedisError as e:
            raise self._down(e) from None

    def depth_now(self) -> int:
        try:
            return self.queue.count
        except redis.RedisError:
            return -1

    async def claim(self, job: Job) -> bool:
        """False when this message was queued before (a platform delivering it twice)."""
        seen = PREFIX + "seen:" + job_id(job.key, job.message_id)
        try:
            return bool(await asyncio.to_thread(self.redis.set, seen, 1, nx=True, ex=DAY))
        except redis.RedisError as e:
            raise self._down(e) from None

    async def put(self, job: Job) -> None:
        address = getattr(job.replier, "address", lambda: None)()
        if address is None:
            raise QueueDown("video workers answer on Discord and Telegram only")
        ident = job_id(job.key, job.message_id)
        data = await job.attachment.read() if job.attachment is not None else None
        spec = {
            "id": ident,
            "key": [job.key.platform, job.key.chat_id, job.key.thread_id],
            "message_id": job.message_id,
            "question": job.question,
            "address": address,
            "status": job.status.id if job.status else None,
            "clip": {"filename": job.attachment.filename, "size": len(data or b""), "kind": job.attachment.kind.value}
            if job.attachment
            else None,
            "shared_by": job.shared_by,
        }
        keep = int(self.config.job_seconds * (self.config.retries + 1)) + 3600
        retry = Retry(max=self.config.retries) if self.config.retries else None

        def enqueue() -> None:
            if data is not None:
                self.redis.set(PREFIX + "clip:" + ident, data, ex=keep)
            self.queue.enqueue(
                "greenroom.core.video_worker.perform",
                spec,
                job_id=ident,
                description=f"video job {ident}",
                job_timeout=int(self.config.job_seconds),
                retry=retry,
                result_ttl=DAY,
                failure_ttl=DAY,
            )

        try:
            await asyncio.to_thread(enqueue)
        except redis.RedisError as e:
            raise self._down(e) from None

    async def idle(self) -> None:
        return None  # the jobs run in other processes

    async def close(self) -> None:
        await asyncio.to_thread(self.redis.close)


class RedisThreads:
    """Clip threads on Redis, so a follow-up question can go to any worker and the bot's character
    knows the clip: the frames (JPEG) or Valley's visual rows (npy), and the turns (JSON)."""

    def __init__(self, client: redis.Redis, seconds: float) -> None:
        self.redis = client
        self.seconds = max(int(seconds), 60)

    @classmethod
    def for_config(cls, client: redis.Redis, c: VideoSection) -> RedisThreads:
        """Kept while follow-ups may come and the character remembers the clip, and an hour more."""
        return cls(client, max(c.followup_minutes, c.remember_minutes) * 60 + 3600)

    @staticmethod
    def _key(key: ConversationKey) -> str:
        return PREFIX + "thread:" + str(key)

    def get(self, key: ConversationKey) -> ClipThread | None:
        raw: dict[bytes, bytes] = self.redis.hgetall(self._key(key))  # type: ignore[assignment]  # bytes replies
        if not raw:
            return None
        meta: dict[str, Any] = json.loads(raw[b"meta"])
        return _thread(_clip_of(raw, meta), meta)

    def summary(self, key: ConversationKey) -> ClipThread | None:
        raw = self.redis.hget(self._key(key), "meta")
        return None if raw is None else _thread(None, json.loads(raw))

    def put(self, key: ConversationKey, thread: ClipThread) -> None:
        clip = thread.clip
        meta = {
            "total_frames": clip.total_frames,
            "indices": clip.indices,
            "turns": thread.turns,
            "shared_by": thread.shared_by,
            "at": thread.at,
            "photo": thread.photo,
        }
        fields: dict[EncodableT, EncodableT] = {}
        if isinstance(clip, FramesClip):
            meta |= {"kind": "frames", "times": clip.times, "still": clip.still, "mime": clip.mime}
            fields["video"] = clip.video
            for i, jpeg in enumerate(clip.jpegs):
                fields[f"frame{i}"] = jpeg
        else:
            rows = io.BytesIO()
            np.save(rows, clip.rows, allow_pickle=False)
            fields["rows"] = rows.getvalue()
        fields["meta"] = json.dumps(meta)
        with self.redis.pipeline() as pipe:
            pipe.delete(self._key(key))
            pipe.hset(self._key(key), mapping=fields)
            pipe.expire(self._key(key), self.seconds)
            pipe.execute()


def _thread(clip: Any, meta: dict[str, Any]) -> ClipThread:
    turns = [(q, a) for q, a in meta["turns"]]
    return ClipThread(clip, turns, meta.get("shared_by", ""), meta.get("at", 0.0), meta.get("photo", False))


def _clip_of(raw: dict[bytes, bytes], meta: dict[str, Any]) -> Any:
    """The clip a thread stored: a vision-language model's frames, or Valley's visual rows."""
    if meta.get("kind") == "frames":
        jpegs = tuple(raw[f"frame{i}".encode()] for i in range(len(meta["times"])))
        return FramesClip(
            jpegs,
            tuple(meta["times"]),
            meta["total_frames"],
            meta["indices"],
            meta["still"],
            raw[b"video"],
            meta["mime"],
        )
    from greenroom.models.valley.model import Clip

    return Clip(np.load(io.BytesIO(raw[b"rows"])), meta["total_frames"], meta["indices"])
