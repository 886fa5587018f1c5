"""Training and evaluating detectors the way the paper does: a training mix per phase and machine
share, and accuracy reported on HR, HF, MR and MF separately, next to a length-only baseline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from greenroom.models.fakenews.data import SUBCLASSES, SWEEP, DataError, Record, check_share, clean, counts, mix_weights
from greenroom.models.fakenews.detector import EmbeddingDetector, EmbeddingFeatures, LinearHead, length_features
from greenroom.models.fakenews.extract import Article
from greenroom.models.fakenews.score import Detector, Score

if TYPE_CHECKING:
    from greenroom.models.embedder import Embedder

C = 1.0  # L2 strength of the heads, chosen by 5-fold grouped cross-validation on the reference `train` split


def articles(records: Sequence[Record]) -> list[Article]:
    return [Article(r.title, r.text) for r in records]


def accuracy(records: Sequence[Record], p_fake: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """Accuracy on each subclass (fake when p_fake >= 0.5) and their unweighted mean."""
    right: dict[str, list[bool]] = {s: [] for s in SUBCLASSES}
    for r, p in zip(records, p_fake, strict=True):
        right[r.subclass].append((p >= 0.5) == r.fake)
    out: dict[str, float | None] = {s: float(np.mean(v)) if v else None for s, v in right.items()}
    present = [v for v in out.values() if v is not None]
    out["mean"] = float(np.mean(present)) if present else None
    return out


@dataclass
class Evaluation:
    model: dict[str, float | None]
    baseline: dict[str, float | None]
    n: dict[str, int]

    def to_json(self) -> dict:
        return {"model": self.model, "baseline": self.baseline, "n": self.n}

    def table(self) -> str:
        def cell(v: float | None) -> str:
            return "   -" if v is None else f"{v:.3f}"

        head = f"{'':10}" + "".join(f"{s:>8}" for s in (*SUBCLASSES, "mean"))
        rows = [
            f"{name:10}" + "".join(f"{cell(acc[s]):>8}" for s in (*SUBCLASSES, "mean"))
            for name, acc in (("model", self.model), ("baseline", self.baseline))
        ]
        n = f"{'n':10}" + "".join(f"{self.n[s]:>8}" for s in SUBCLASSES)
        return "\n".join([head, *rows, n])


def evaluate(
    detector: Detector, baseline: LinearHead, records: Sequence[Record], scores: Sequence[Score] | None = None
) -> Evaluation:
    """Per-subclass accuracy of ``detector`` and of the length-only ``baseline`` on ``records``."""
    if not records:
        raise DataError("no records to evaluate")
    scores = scores if scores is not None else detector.score(articles(records))
    return Evaluation(
        accuracy(records, [s.p_fake for s in scores]),
        accuracy(records, baseline.probability(length_features(articles(records)))),
        counts(records),
    )


def fit_baseline(records: Sequence[Record], weights: Sequence[float] | np.ndarray) -> LinearHead:
    labels = np.array([r.fake for r in records])
    return LinearHead.fit(length_features(articles(records)), labels, np.asarray(weights), C, standardise=True)


def machine_weights(records: Sequence[Record]) -> np.ndarray:
    """Each subclass weighs the same for the machine-written head, whatever the mix."""
    have = counts(records)
    if not (have["MR"] + have["MF"] and have["HR"] + have["HF"]):
        raise DataError("the machine-written head needs human and machine records in the training data")
    present = [s for s in SUBCLASSES if have[s]]
    return np.array([len(records) / len(present) / have[r.subclass] for r in records])


@dataclass
class TrainedEmbedding:
    detector: EmbeddingDetector
    train_counts: dict[str, int]
    val: Evaluation | None = None


def fit_embedding(
    features: EmbeddingFeatures, records: Sequence[Record], x: np.ndarray, phase: str, share: float | None
) -> EmbeddingDetector:
    """Both heads and the baseline on precomputed article vectors ``x`` (rows of ``records``)."""
    weights = np.asarray(mix_weights(list(records), phase, share))
    fake = LinearHead.fit(x, np.array([r.fake for r in records]), weights, C, standardise=False)
    machine = LinearHead.fit(x, np.array([r.machine for r in records]), machine_weights(records), C, standardise=False)
    return EmbeddingDetector(features, fake, machine, fit_baseline(records, weights))


def split_rows(records: Sequence[Record], split: str) -> list[Record]:
    rows = list(records) if split == "all" else [r for r in records if r.split == split]
    if not rows:
        raise DataError(f"the data has no {split!r} rows")
    return rows


def train_embedding(
    records: Sequence[Record], embedder: Embedder, phase: str, share: float | None, progress: bool = False
) -> TrainedEmbedding:
    """Train the default backend on the `train` rows (cleaned); evaluate on `val` when there is one."""
    share = check_share(phase, share)
    features, train, val, x = _vectors(records, embedder, progress)
    detector = fit_embedding(features, train, x[: len(train)], phase, share)
    result = TrainedEmbedding(detector, counts(train))
    if val:
        result.val = _judge(detector, val, x[len(train) :])
    detector.card = {
        "phase": phase,
        "machine_share": share,
        "c": C,
        "train": result.train_counts,
        "val": result.val.to_json() if result.val else None,
    }
    return result


def sweep(
    records: Sequence[Record], embedder: Embedder, points: Sequence[tuple[str, float]] = SWEEP, progress: bool = False
) -> list[tuple[str, float, Evaluation]]:
    """The paper's experiment: one detector per (phase, machine share), each evaluated per subclass
    on the `val` rows. Article vectors are computed once for all points."""
    features, train, val, x = _vectors(records, embedder, progress)
    if not val:
        raise DataError("the data has no 'val' rows")
    return [
        (phase, share, _judge(fit_embedding(features, train, x[: len(train)], phase, share), val, x[len(train) :]))
        for phase, share in points
    ]


def _vectors(
    records: Sequence[Record], embedder: Embedder, progress: bool
) -> tuple[EmbeddingFeatures, list[Record], list[Record], np.ndarray]:
    """The cleaned `train` rows, the `val` rows, and the article vectors of both, computed once."""
    train = clean(split_rows(records, "train"))
    val = [r for r in records if r.split == "val"]
    features = EmbeddingFeatures(embedder)
    return features, train, val, features(articles(train + val), progress=progress)


def _judge(detector: EmbeddingDetector, val: Sequence[Record], x_val: np.ndarray) -> Evaluation:
    """Per-subclass accuracy on `val` from precomputed article vectors."""
    scores = [Score(float(p), None) for p in detector.fake.probability(x_val)]
    return evaluate(detector, detector.baseline, val, scores)  # type: ignore[arg-type]


def sweep_table(rows: Sequence[tuple[str, float, Evaluation]]) -> str:
    head = f"{'phase':<18}{'share':>6}" + "".join(f"{s:>7}" for s in (*SUBCLASSES, "mean")) + f"{'length':>8}"
    lines = [head]
    for phase, share, ev in rows:
        cells = "".join(
            f"{ev.model[s]:>7.3f}" if ev.model[s] is not None else f"{'-':>7}" for s in (*SUBCLASSES, "mean")
        )
        lines.append(f"{phase:<18}{share:>6.2f}{cells}{ev.baseline['mean']:>8.3f}")
    return "\n".join(lines)


def write_card(folder: Path, trained: TrainedEmbedding, data_name: str) -> None:
    """A data card next to the weights: what the model was trained on and how it scored."""
    card = trained.detector.card
    lines = [
        "# Data card: Greenroom fake-news detector",
        "",
        f"- Backbone: sentence embedder `{trained.detector.features.embedder.name}` "
        f"({trained.detector.features.embedder.dim}-d), first {trained.detector.features.max_tokens} tokens "
        "of title + text, mean over windows; two logistic-regression heads (fake, machine-written).",
        f"- Training data: `{data_name}`, `train` rows after dropping ids labelled both fake and real and "
        f"repeated texts: {', '.join(f'{k} {v}' for k, v in trained.train_counts.items())}.",
        f"- Mix: phase `{card['phase']}`, machine share {card['machine_share']:g} of each class "
        "(weights, not sampling); the machine-written head weighs the four subclasses equally.",
        f"- L2 strength C = {card['c']:g}.",
        "",
    ]
    if trained.val:
        lines += ["## Accuracy on the `val` rows (p_fake >= 0.5 means fake)", "", "```", trained.val.table(), "```", ""]
    (folder / "DATA_CARD.md").write_text("\n".join(lines), encoding="utf-8")


def fit_baseline_on(records: Sequence[Record]) -> LinearHead:
    """A length baseline for a checkpoint that has none: trained on the data's `train` rows (transitional mix)."""
    train = clean(split_rows(records, "train"))
    return fit_baseline(train, mix_weights(train, "transitional"))


def train_transformer(
    records: Sequence[Record], backbone: Path, phase: str, share: float | None, out: Path
) -> Evaluation | None:
    """Fine-tune a transformers checkpoint on the training mix; evaluated on `val` when there is one."""
    from greenroom.models.fakenews.detector import FORMAT, MODEL_FILE
    from greenroom.models.fakenews.transformer import TransformersDetector, fine_tune

    share = check_share(phase, share)
    train = clean(split_rows(records, "train"))
    weights = mix_weights(train, phase, share)
    fine_tune(train, weights, backbone, out)
    baseline = fit_baseline(train, weights)
    val = [r for r in records if r.split == "val"]
    evaluation = evaluate(TransformersDetector(out), baseline, val) if val else None
    card = {
        "phase": phase,
        "machine_share": share,
        "backbone": str(backbone),
        "train": counts(train),
        "val": evaluation.to_json() if evaluation else None,
    }
    (out / MODEL_FILE).write_text(
        json.dumps(
            {"format": FORMAT, "backbone": "transformers", "baseline": baseline.to_json(), "card": card}, indent=1
        )
    )
    return evaluation
