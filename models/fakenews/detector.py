"""The fake-news detector: the probability that an article is fake, and that it reads as machine-written.

The default backend runs on a CPU in milliseconds: the sentence embedder Greenroom already ships
(all-MiniLM-L6-v2) reads the first 508 tokens of title + text (two full windows of 254; a 512-token
RoBERTa, as in the paper, reads 510 plus its two special tokens), and two logistic-regression heads trained by
`greenroom fakenews train` score the mean vector. A model is one JSON file of weights (no pickle).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenroom.models.embedder import Embedder
from greenroom.models.fakenews.data import DataError
from greenroom.models.fakenews.extract import Article
from greenroom.models.fakenews.score import Detector, Score

FORMAT = "greenroom-fakenews/1"
MODEL_FILE = "detector.json"
DEFAULT_MODEL = Path(__file__).resolve().parent / "default"
MAX_TOKENS = 508  # about what the paper's 512-token RoBERTa-style detectors read: two MiniLM windows


@dataclass(frozen=True)
class LinearHead:
    """Logistic regression on standardised features: sigmoid(((x - mean) / scale) . coef + bias)."""

    coef: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def probability(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict:
        return {"coef": self.coef.tolist(), "bias": self.bias, "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> LinearHead:
        coef, mean, scale = (np.asarray(data[k], dtype=np.float64) for k in ("coef", "mean", "scale"))
        if not (coef.shape == mean.shape == scale.shape and coef.ndim == 1) or not np.all(scale > 0):
            raise DataError("a detector head has inconsistent shapes")
        return cls(coef, float(data["bias"]), mean, scale)

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float, standardise: bool
    ) -> LinearHead:
        """Weighted L2 logistic regression (scikit-learn, used only to train)."""
        from sklearn.linear_model import LogisticRegression

        keep = weights > 0
        x, y, w = features[keep], labels[keep], weights[keep]
        mean = np.average(x, axis=0, weights=w) if standardise else np.zeros(x.shape[1])
        scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w)) if standardise else np.ones(x.shape[1])
        scale = np.where(scale > 1e-12, scale, 1.0)
        model = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y, sample_weight=w)
        return cls(model.coef_[0].astype(np.float64), float(model.intercept_[0]), mean, scale)


def length_features(articles: Sequence[Article]) -> np.ndarray:
    """What the length-only baseline sees: log word and character counts of the text, log title words."""
    return np.array(
        [
            [math.log1p(len(a.text.split())), math.log1p(len(a.text)), math.log1p(len(a.title.split()))]
            for a in articles
        ],
        dtype=np.float64,
    )


class EmbeddingFeatures:
    """Mean embedder vector over the windows of the first ``max_tokens`` tokens of title + text."""

    def __init__(self, embedder: Embedder, max_tokens: int = MAX_TOKENS) -> None:
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.window = embedder.max_tokens - 2  # room for [CLS] and [SEP]

    def windows(self, article: Article) -> list[str]:
        tokenizer = self.embedder.model.tokenizer
        head = f"{article.title}\n{article.text[: self.max_tokens * 12]}"  # enough characters for the tokens kept
        ids = tokenizer(head, add_special_tokens=False, truncation=True, max_length=self.max_tokens)["input_ids"]
        return [tokenizer.decode(ids[i : i + self.window]) for i in range(0, len(ids), self.window)] or [head]

    def __call__(self, articles: Sequence[Article], progress: bool = False) -> np.ndarray:
        texts, owner = [], []
        for i, article in enumerate(articles):
            parts = self.windows(article)
            texts += parts
            owner += [i] * len(parts)
        vectors = self.embedder.encode(texts, progress=progress).astype(np.float64)
        sums = np.zeros((len(articles), vectors.shape[1]))
        np.add.at(sums, np.asarray(owner), vectors)
        return sums / np.bincount(owner, minlength=len(articles))[:, None]


class EmbeddingDetector:
    """The default backend: two linear heads (fake, machine) on the embedder's article vector."""

    def __init__(
        self,
        features: EmbeddingFeatures,
        fake: LinearHead,
        machine: LinearHead,
        baseline: LinearHead | None = None,
        card: dict | None = None,
    ) -> None:
        self.features = features
        self.fake = fake
        self.machine = machine
        self.baseline = baseline
        self.card = card or {}

    def score(self, articles: Sequence[Article]) -> list[Score]:
        if not articles:
            return []
        x = self.features(articles)
        return [
            Score(float(f), float(m))
            for f, m in zip(self.fake.probability(x), self.machine.probability(x), strict=True)
        ]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "backbone": "embedder",
            "embedder": self.features.embedder.name,
            "dim": self.features.embedder.dim,
            "max_tokens": self.features.max_tokens,
            "heads": {"fake": self.fake.to_json(), "machine": self.machine.to_json()},
            "baseline": self.baseline.to_json() if self.baseline else None,
            "card": self.card,
        }
        path = folder / MODEL_FILE
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path


def read_model_file(folder: Path) -> dict | None:
    """The detector.json of a model folder, checked, or None when the folder has none."""
    path = folder / MODEL_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a detector file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not a Greenroom detector file (format {FORMAT})")
    return data


def baseline_of(folder: Path) -> LinearHead | None:
    data = read_model_file(folder)
    return LinearHead.from_json(data["baseline"]) if data and data.get("baseline") else None


def load_detector(folder: str | Path | None, embedder: Callable[[], Embedder]) -> Detector:
    """A detector from a model folder: ours (detector.json, embedder backbone) or any transformers
    sequence-classification checkpoint (config.json). ``None`` is the model shipped with Greenroom."""
    folder = Path(folder).expanduser() if folder else DEFAULT_MODEL
    data = read_model_file(folder)
    if data is None or data.get("backbone") == "transformers":
        if not (folder / "config.json").is_file():
            raise DataError(
                f"no detector at {folder}: expected {MODEL_FILE} or a transformers checkpoint (config.json)"
            )
        from greenroom.models.fakenews.transformer import TransformersDetector

        return TransformersDetector(folder)
    model = embedder()
    if data.get("dim") != model.dim or data.get("embedder") != model.name:
        raise DataError(
            f"the detector at {folder} was trained on the {data.get('embedder')} embedder "
            f"({data.get('dim')}-d), but the configured embedder is {model.name} ({model.dim}-d); "
            "retrain it with `greenroom fakenews train`"
        )
    heads = data["heads"]
    return EmbeddingDetector(
        EmbeddingFeatures(model, int(data.get("max_tokens", MAX_TOKENS))),
        LinearHead.from_json(heads["fake"]),
        LinearHead.from_json(heads["machine"]),
        LinearHead.from_json(data["baseline"]) if data.get("baseline") else None,
        data.get("card") or {},
    )
