"""The chaos run's one table: a row per figure, with its same-run baseline and ratio where one means
something, what was expected, and whether it held."""

from __future__ import annotations

from dataclasses import dataclass

from tests.bench.common import table

HEADER = ["scenario", "figure", "value", "baseline (same run)", "ratio", "expected", "ok"]


@dataclass
class Row:
    scenario: str
    figure: str
    value: object
    baseline: str = ""
    ratio: float | None = None
    expect: str = ""
    ok: bool | None = None  # None: a figure reported, not checked

    def cells(self) -> list[object]:
        value = f"{self.value:,}" if isinstance(self.value, int) else self.value
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        ok = "" if self.ok is None else "yes" if self.ok else "NO"
        return [self.scenario, self.figure, value, self.baseline, ratio, self.expect, ok]


def print_table(title: str, rows: list[Row], notes: list[str]) -> None:
    table(title, HEADER, [r.cells() for r in rows])
    for note in notes:
        print(f"  - {note}")
