"""What every fake-news detector backend gives: a score per article."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from greenroom.models.fakenews.extract import Article


@dataclass(frozen=True)
class Score:
    p_fake: float
    p_machine: float | None


class Detector(Protocol):
    def score(self, articles: Sequence[Article]) -> list[Score]: ...
