"""Links in chat: checked in the background while the persona answers, flagged only when likely fake."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from greenroom.core.adapter import Replier
from greenroom.core.config import FactcheckSection
from greenroom.core.events import ConversationKey, Message, urls_in
from greenroom.core.metrics import Metrics
from greenroom.core.ratelimit import RateLimiter
from greenroom.memory.settings import Settings
from greenroom.models.fakenews.checker import LinkChecker, Verdict, normalise
from greenroom.models.fakenews.fetch import FetchError

log = logging.getLogger(__name__)

ESTIMATE = "This is an automated estimate, not a fact-check."


def _percent(p: float) -> str:
    return f"{round(p * 100)}%"


def _named(v: Verdict) -> str:
    return f"“{v.title}” ({v.url})" if v.title else v.url


def describe(v: Verdict) -> str:
    """One or two calm lines about a verdict."""
    if v.verdict == "error":
        return f"I could not check {v.url}: {v.error}."
    machine = (
        f" It also reads as machine-written ({_percent(v.p_machine)})."
        if v.p_machine is not None and v.p_machine >= 0.5
        else ""
    )
    assert v.p_fake is not None  # every verdict but "error" has a score
    if v.verdict == "fake":
        return (
            f"⚠️ {_named(v)} may be fake news: the detector puts it at {_percent(v.p_fake)} likely fake."
            f"{machine}\n{ESTIMATE}"
        )
    return f"{_named(v)} reads as real news to the detector ({_percent(v.p_fake)} likely fake).{machine}\n{ESTIMATE}"


class FactCheck:
    """The per-chat switch and threshold, the per-chat fetch limit, and the background checks."""

    def __init__(
        self,
        checker: Callable[[], LinkChecker],
        settings: Settings,
        config: FactcheckSection,
        metrics: Metrics | None = None,
    ) -> None:
        self._checker = checker
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.config = config
        self.rate = RateLimiter(config.fetches_per_minute, config.fetch_burst)
        self._tasks: set[asyncio.Task] = set()

    @property
    def checker(self) -> LinkChecker:
        return self._checker()

    def enabled(self, chat: str) -> bool:
        return (self.settings.get(chat, "factcheck") or self.config.default) == "on"

    def threshold(self, chat: str) -> float:
        value = self.settings.get(chat, "factcheck_threshold")
        return float(value) if value is not None else self.config.threshold

    def links(self, message: Message) -> list[str]:
        """The message's links (platform entities and embeds, then plain text), normalised, de-duplicated,
        the first ``max_links``; links that cannot be fetched at all are dropped here."""
        found: dict[str, None] = {}
        for raw in [link.url for link in message.links] + urls_in(message.text):
            try:
                found[normalise(raw, self.checker.fetcher.allow)] = None
            except FetchError:
                continue
            if len(found) >= self.config.max_links:
                break
        return list(found)

    def observe(self, message: Message, replier: Replier) -> None:
        """Start a background check of a message's links when the chat has fact-checking on."""
        if message.command is not None or not (message.links or "http" in message.text):
            return
        if not self.enabled(message.key.chat):
            return
        urls = self.links(message)
        if urls:
            task = asyncio.create_task(self._flag(message.key, urls, replier))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flag(self, key: ConversationKey, urls: list[str], replier: Replier) -> None:
        for url in urls:
            try:
                verdict = await self._verdict(key, url)
                if verdict is None:
                    log.info("link check skipped in %s: fetch limit reached", key.chat)
                elif verdict.verdict == "fake":
                    self.metrics.links_flagged.inc()
                    await replier.send(describe(verdict))
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed check must never reach the chat or stop the others
                log.exception("link check of %s failed", url)

    async def on_request(self, key: ConversationKey, url: str) -> str:
        """`/factcheck URL`: always answers, whatever the verdict."""
        verdict = await self._verdict(key, url)
        return describe(verdict) if verdict else "Too many links checked in this chat just now; try again in a minute."

    async def _verdict(self, key: ConversationKey, url: str) -> Verdict | None:
        """A link's verdict at the chat's threshold; None when the chat's fetch limit is reached
        (cached verdicts are free)."""
        if not self.checker.is_cached(url) and self.rate.check(key.chat) is not None:
            return None
        return await self.checker.check(url, self.threshold(key.chat))

    async def idle(self) -> None:
        """Wait for the checks in progress."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.idle()
