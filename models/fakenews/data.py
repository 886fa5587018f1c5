"""Fake-news data: records in the paper's four subclasses, grouped splits and training mixes.

Su, Cardie and Nakov (2024) split news by veracity and author: human-written real (HR) and
fake (HF), machine-paraphrased real (MR) and machine-generated fake (MF). An MF item shares its
article id with the HF item it was generated from (MR with its HR), so every split here is
grouped by id: a paraphrase never lands on the other side of a split.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from greenroom.errors import UserError

SUBCLASSES = ("HR", "HF", "MR", "MF")
PHASES = {  # phase -> (default machine share, allowed range); see `mix_weights`
    "human-legacy": (0.0, (0.0, 0.0)),
    "transitional": (0.5, (0.0, 1.0)),
    "machine-dominance": (1.0, (0.5, 1.0)),
}
SWEEP = (
    ("human-legacy", 0.0),
    ("transitional", 0.25),
    ("transitional", 0.5),
    ("transitional", 0.67),
    ("machine-dominance", 0.75),
    ("machine-dominance", 1.0),
)


class DataError(UserError):
    """A data file or training request that cannot be used, in words."""


@dataclass(frozen=True)
class Record:
    uid: str
    id: str
    subclass: str
    title: str
    text: str
    split: str = ""

    @property
    def fake(self) -> bool:
        return self.subclass.endswith("F")

    @property
    def machine(self) -> bool:
        return self.subclass.startswith("M")


def grouped_split(article_id: str) -> str:
    """The split of an article id when the data has none: 70 % train, 10 % val, 20 % test, by id.

    The same rule as the reference file's `split` column (sha1 of the id, modulo 10).
    """
    bucket = int(hashlib.sha1(article_id.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 7 else "val" if bucket == 7 else "test"


def read_records(path: str | Path) -> list[Record]:
    """The flat jsonl (one record per line) or a folder with the paper's HF/HR/MF/MR.json."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_four_files(path)
    if not path.is_file():
        raise DataError(f"no data at {path}: give a .jsonl file or a folder with HF.json, HR.json, MF.json, MR.json")
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                records.append(_record(row, str(row.get("uid") or f"{row['subclass']}:{number}"), row["subclass"]))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise DataError(f"{path}, line {number}: not a fake-news record ({e!s:.80})") from None
    return records


def _read_four_files(folder: Path) -> list[Record]:
    records = []
    for subclass in SUBCLASSES:
        file = folder / f"{subclass}.json"
        if not file.is_file():
            raise DataError(f"{folder} has no {subclass}.json (the paper's layout has HF, HR, MF and MR)")
        try:
            items = json.loads(file.read_text(encoding="utf-8"))
            records += [_record(row, f"{subclass}:{key}", subclass) for key, row in items.items()]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as e:
            raise DataError(f"{file}: not the paper's format ({e!s:.80})") from None
    return records


def _record(row: dict, uid: str, subclass: str) -> Record:
    if subclass not in SUBCLASSES:
        raise KeyError(f"subclass {subclass!r}")
    article_id = str(row["id"])
    return Record(
        uid,
        article_id,
        subclass,
        str(row.get("title") or ""),
        str(row["text"]),
        str(row.get("split") or grouped_split(article_id)),
    )


def clean(records: list[Record]) -> list[Record]:
    """Drop ids labelled both fake and real (conflicting labels) and repeated texts (scrape noise:
    the same ad or parking page under several ids), keeping each text's first record."""
    fake_ids = {r.id for r in records if r.fake}
    real_ids = {r.id for r in records if not r.fake}
    seen: set[str] = set()
    out = []
    for r in records:
        key = " ".join(r.text.split())
        if r.id in fake_ids & real_ids or key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def counts(records: Sequence[Record]) -> dict[str, int]:
    found = Counter(r.subclass for r in records)
    return {s: found.get(s, 0) for s in SUBCLASSES}


def check_share(phase: str, share: float | None) -> float:
    """The machine share for a phase (its default when None), refused outside the phase's range."""
    if phase not in PHASES:
        raise DataError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")
    default, (low, high) = PHASES[phase]
    share = default if share is None else share
    if not low <= share <= high:
        raise DataError(f"--mf-share {share:g} does not fit phase {phase} (allowed {low:g} to {high:g})")
    return share


def mix_weights(records: list[Record], phase: str, share: float | None = None) -> list[float]:
    """Per-record training weights that realise the paper's mix.

    The real and fake classes weigh the same; within the fake class MF makes up ``share`` and HF
    the rest, and likewise MR and HR within the real class (MR keeps machine style from being
    learned as "fake"). `human-legacy` trains on HR and HF only (share 0); `transitional` mixes
    both authors; `machine-dominance` is mostly or only machine-written (share >= 0.5). Weights,
    not sampling: every record of a subclass that is in the mix counts, none is thrown away.
    """
    share = check_share(phase, share)
    have = counts(records)
    target = {"HF": 1 - share, "MF": share, "HR": 1 - share, "MR": share}
    missing = [s for s, t in target.items() if t > 0 and have[s] == 0]
    if missing:
        raise DataError(
            f"the {phase} mix at machine share {share:g} needs {', '.join(missing)} records; the data has {have}"
        )
    return [target[r.subclass] / have[r.subclass] * len(records) / 2 if target[r.subclass] else 0.0 for r in records]
