"""Counters and timings for `/metrics` (Prometheus text format), one registry per bot process."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from greenroom.core.events import Message

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


def message_kind(message: Message) -> str:
    """command, video, image, audio, file or text: what a message mainly is."""
    if message.command is not None:
        return "command"
    kinds = [a.kind.value for a in message.attachments]
    return next((k for k in ("video", "image", "audio", "file") if k in kinds), "text")


class Metrics:
    """What `/metrics` reports; the parts of the bot count into it as things happen."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter(
            "greenroom_messages", "Messages for the bot, by platform and kind", ["platform", "kind"], registry=r
        )
        self.replies = Counter("greenroom_replies", "Persona replies sent, by platform", ["platform"], registry=r)
        self.errors = Counter("greenroom_errors", "Handler failures, by handler", ["handler"], registry=r)
        self.rate_limited = Counter("greenroom_rate_limited", "Messages refused by the per-user rate limit", registry=r)
        self.model_seconds = Histogram(
            "greenroom_model_seconds", "Language model time per reply", buckets=SECONDS, registry=r
        )
        self.first_token_seconds = Histogram(
            "greenroom_model_first_token_seconds", "Time to the first reply token", buckets=SECONDS, registry=r
        )
        self.video_jobs = Counter("greenroom_video_jobs", "Video jobs, by outcome", ["outcome"], registry=r)
        self.links_flagged = Counter("greenroom_links_flagged", "Links flagged as likely fake", registry=r)
        self.queue_depth = Gauge("greenroom_queue_depth", "Jobs waiting, by queue", ["queue"], registry=r)

    def watch_queue(self, name: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the queue's gauge at each scrape."""
        self.queue_depth.labels(name).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
