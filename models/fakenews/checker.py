"""Checking one link: normalise, fetch safely, extract the article, score it; verdicts cached per URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from greenroom.models.fakenews.data import DataError
from greenroom.models.fakenews.extract import ExtractError, extract
from greenroom.models.fakenews.fetch import ARTICLE_TYPES, FetchError, SafeFetcher, check_url
from greenroom.models.fakenews.score import Detector

log = logging.getLogger(__name__)

TRACKING = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid", "igshid", "yclid", "_hsenc", "_hsmi")


def normalise(raw: str, allow: frozenset[str] = frozenset()) -> str:
    """One spelling per article: checked (scheme, credentials, length, address), IDNA host in lower
    case, no fragment, no default port, no tracking parameters. Raises FetchError."""
    url = check_url(raw, allow)
    query = [(k, v) for k, v in url.query.items() if not k.lower().startswith(TRACKING)]
    return str(url.with_query(query or None))


class VerdictStore(Protocol):
    """Where verdicts are kept between checks (`memory.verdicts.VerdictCache`)."""

    def get(self, url: str) -> dict | None: ...

    def put(self, url: str, verdict: dict) -> None: ...


@dataclass(frozen=True)
class Verdict:
    url: str
    verdict: str  # "fake", "real" or "error"
    p_fake: float | None = None
    p_machine: float | None = None
    title: str = ""
    error: str = ""

    def to_json(self) -> dict:
        return asdict(self)


class LinkChecker:
    """Fetch + extract + detect for one URL; the detector is built on first use."""

    def __init__(
        self, fetcher: SafeFetcher, detector: Callable[[], Detector], cache: VerdictStore, threshold: float
    ) -> None:
        self.fetcher = fetcher
        self._make_detector = detector
        self._detector: Detector | None = None
        self._detector_lock = asyncio.Lock()
        self.cache = cache
        self.threshold = threshold

    def is_cached(self, raw_url: str) -> bool:
        try:
            return self.cache.get(normalise(raw_url, self.fetcher.allow)) is not None
        except FetchError:
            return False

    async def detector(self) -> Detector:
        async with self._detector_lock:
            if self._detector is None:
                self._detector = await asyncio.to_thread(self._make_detector)
            return self._detector

    async def check(self, raw_url: str, threshold: float | None = None) -> Verdict:
        """The verdict for one link (cached ones are reused); errors become an "error" verdict."""
        try:
            url = normalise(raw_url, self.fetcher.allow)
        except FetchError as e:
            return Verdict(raw_url.strip()[:200], "error", error=str(e))
        found = self.cache.get(url)
        if found is None:
            verdict = await self._check(url)
            if verdict.verdict == "error":
                return verdict
            self.cache.put(url, verdict.to_json())
            found = verdict.to_json()
        cut = self.threshold if threshold is None else threshold
        return Verdict(**{**found, "verdict": "fake" if found["p_fake"] >= cut else "real"})

    async def _check(self, url: str) -> Verdict:
        try:
            fetched = await self.fetcher.get(url, ARTICLE_TYPES)
            article = await asyncio.to_thread(extract, fetched)
            detector = await self.detector()
            score = (await asyncio.to_thread(detector.score, [article]))[0]
        except (FetchError, ExtractError, DataError) as e:
            log.info("link check of %s: %s", url, e)
            return Verdict(url, "error", error=str(e))
        return Verdict(
            url,
            "fake" if score.p_fake >= self.threshold else "real",
            round(score.p_fake, 4),
            None if score.p_machine is None else round(score.p_machine, 4),
            article.title,
        )
