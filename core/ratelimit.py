"""Per-user rate limits: one token bucket per sender."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float
    warned: bool = False


class RateLimiter:
    """``burst`` messages at once, refilled at ``per_minute``; ``per_minute == 0`` disables it."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, who: str) -> float | None:
        """Take a token for ``who``: None when allowed, else the seconds until the next one.

        Only the first refusal of a cooldown returns a wait; later ones return 0.0, so the
        caller can answer once instead of flooding the chat with cooldown messages.
        """
        if self.rate == 0:
            return None
        now = self.clock()
        if len(self._buckets) > 10_000:  # forget senders whose buckets have refilled
            self._buckets = {k: b for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate < self.burst}
        bucket = self._buckets.get(who) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[who] = bucket
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return None
        if bucket.warned:
            return 0.0
        bucket.warned = True
        return max(1.0, math.ceil((1.0 - bucket.tokens) / self.rate))
