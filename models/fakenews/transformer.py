"""The optional backend: any transformers sequence-classification checkpoint from a local folder
(the paper fine-tuned RoBERTa), on a GPU when there is one. Never downloads."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from greenroom.models.fakenews.data import SUBCLASSES, DataError, Record
from greenroom.models.fakenews.extract import Article
from greenroom.models.fakenews.score import Score

# Fine-tuning defaults: common practice for RoBERTa-style sequence classification, NOT taken from
# the paper (its hyperparameters are not published in a form we could verify).
LEARNING_RATE = 2e-5
EPOCHS = 3
BATCH = 16
MAX_TOKENS = 512  # the paper's RoBERTa input length, special tokens included
WARMUP = 0.06


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _label_indices(id2label: dict) -> tuple[list[int], list[int] | None]:
    """Which output indices mean "fake" and which "machine-written", from the checkpoint's labels.

    Four labels HR/HF/MR/MF give both; two labels give fake only (a label containing "fake",
    else index 1, the usual LABEL_1 = positive).
    """
    names = {int(i): str(n).strip().upper() for i, n in id2label.items()}
    if set(names.values()) == set(SUBCLASSES):
        return ([i for i, n in names.items() if n.endswith("F")], [i for i, n in names.items() if n.startswith("M")])
    if len(names) == 2:
        fake = [i for i, n in names.items() if "FAKE" in n]
        return (fake[:1] or [1], None)
    raise DataError(f"the checkpoint's labels {sorted(names.values())} are neither HR/HF/MR/MF nor two classes")


class TransformersDetector:
    def __init__(self, folder: Path, device: str | None = None, batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = _device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = (
                AutoModelForSequenceClassification.from_pretrained(
                    str(folder), local_files_only=True, dtype=torch.float16 if self.device == "cuda" else torch.float32
                )
                .to(self.device)
                .eval()
            )
        except (OSError, ValueError) as e:
            raise DataError(f"could not load the classifier at {folder}: {e!s:.200}") from None
        self.fake_idx, self.machine_idx = _label_indices(self.model.config.id2label)
        self.max_length = min(MAX_TOKENS, int(getattr(self.tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS))
        self.batch_size = batch_size

    def probabilities(self, articles: Sequence[Article]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(articles), self.batch_size):
            batch = articles[start : start + self.batch_size]
            enc = self.tokenizer(
                [a.title for a in batch],
                [a.text[: self.max_length * 12] for a in batch],
                truncation="only_second",
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                out.append(torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def score(self, articles: Sequence[Article]) -> list[Score]:
        if not articles:
            return []
        p = self.probabilities(articles)
        fake = p[:, self.fake_idx].sum(axis=1)
        machine = p[:, self.machine_idx].sum(axis=1) if self.machine_idx else [None] * len(p)
        return [Score(float(f), None if m is None else float(m)) for f, m in zip(fake, machine, strict=True)]


def fine_tune(
    records: Sequence[Record],
    weights: Sequence[float],
    backbone: Path,
    out: Path,
    epochs: int = EPOCHS,
    learning_rate: float = LEARNING_RATE,
    batch_size: int = BATCH,
    device: str | None = None,
    seed: int = 0,
) -> None:
    """Fine-tune a four-way (HR/HF/MR/MF) classifier from a local checkpoint, each record's loss
    weighted by the training mix, and save it (safetensors) with its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    device = _device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(backbone),
            local_files_only=True,
            num_labels=4,
            id2label=dict(enumerate(SUBCLASSES)),
            label2id={s: i for i, s in enumerate(SUBCLASSES)},
            ignore_mismatched_sizes=True,
        ).to(device)
    except (OSError, ValueError) as e:
        raise DataError(f"could not load the backbone at {backbone}: {e!s:.200}") from None
    used = [(r, w) for r, w in zip(records, weights, strict=True) if w > 0]
    max_length = min(MAX_TOKENS, int(getattr(tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS))
    steps = epochs * math.ceil(len(used) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
    order = random.Random(seed)
    model.train()
    for _ in range(epochs):
        order.shuffle(used)
        for start in range(0, len(used), batch_size):
            batch = used[start : start + batch_size]
            enc = tokenizer(
                [r.title for r, _ in batch],
                [r.text[: max_length * 12] for r, _ in batch],
                truncation="only_second",
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            labels = torch.tensor([SUBCLASSES.index(r.subclass) for r, _ in batch], device=device)
            w = torch.tensor([w for _, w in batch], device=device, dtype=torch.float32)
            loss = (
                torch.nn.functional.cross_entropy(model(**enc).logits, labels, reduction="none") * w
            ).sum() / w.sum()
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
