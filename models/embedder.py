"""The sentence embedder (sentence-transformers), loaded from a local folder or model package."""

from __future__ import annotations

import threading

import numpy as np

from greenroom.models.files import resolve_model_path


class Embedder:
    """Normalised sentence vectors, plus windows that let long stories be found by any line."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64, name: str = "") -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(model)
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.name = name or (path.name if path.name != "model" else path.parent.name)
        self.dim = int(self.model.get_embedding_dimension() or 0)
        self.max_tokens = int(self.model.max_seq_length or 0)
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time; torch uses all cores already
        self._traced = self._trace()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit vectors as float32 rows."""
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.asarray(vectors, dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        """One unit vector for a chat query: the hot path of every turn.

        A single unpadded text goes through a TorchScript trace of the transformer (about half
        the time of the eager model, whose cost here is mostly Python overhead) and then the
        model's own pooling; anything else uses `encode`.
        """
        if self._traced is None:
            return self.encode([text])[0]
        import torch

        tokens = self.model.tokenizer([text], return_tensors="pt", truncation=True, max_length=self.max_tokens)
        with self._lock, torch.inference_mode():
            hidden = self._traced(tokens["input_ids"], tokens["attention_mask"])[0]
            pooled = self.model[1]({"token_embeddings": hidden, "attention_mask": tokens["attention_mask"]})
            vector = torch.nn.functional.normalize(pooled["sentence_embedding"], dim=-1)
        return vector[0].float().numpy()

    def _trace(self):
        """A frozen trace of the transformer for single queries, kept only if it matches `encode`."""
        import warnings

        import torch

        try:
            modules = list(self.model)
            if len(modules) < 2 or type(modules[1]).__name__ != "Pooling":
                return None
            auto = modules[0].auto_model
            example = self.model.tokenizer(["a short example query"], return_tensors="pt")
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                traced = torch.jit.freeze(
                    torch.jit.trace(
                        auto,
                        example_kwarg_inputs={
                            "input_ids": example["input_ids"],
                            "attention_mask": example["attention_mask"],
                        },
                        strict=False,
                    ).eval()
                )
            self._traced = lambda ids, mask: (traced(input_ids=ids, attention_mask=mask)["last_hidden_state"],)
            probe = "A longer probe sentence, with punctuation, to check the trace against the model."
            if float(self.query(probe) @ self.encode([probe])[0]) > 0.99999:
                return self._traced
        except Exception:  # any tracing problem: the plain path still works
            pass
        return None

    def token_counts(self, texts: list[str]) -> list[int]:
        ids = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(i) for i in ids]

    def windows(self, text: str) -> list[str]:
        """Extra passages for a story longer than the input window: runs of whole lines that fit.

        A story that fits gets none (it is embedded whole, as ChatHaruhi does); a longer one
        is otherwise cut off silently by the model, so its later lines could never match.
        """
        budget = self.max_tokens - 2
        lines = [line for line in text.splitlines() if line.strip()]
        counts = self.token_counts(lines) if lines else []
        if sum(counts) + len(counts) <= budget:
            return []
        out: list[str] = []
        start = 0
        while start < len(lines):
            end, used = start, 0
            while end < len(lines) and (end == start or used + counts[end] + 1 <= budget):
                used += counts[end] + 1
                end += 1
            out.append("\n".join(lines[start:end]))
            if end >= len(lines):
                break
            start = max(end - 1, start + 1)  # one line of overlap keeps an exchange together
        return out


class LexicalEncoder:
    """BM25 term weights from Qdrant's multilingual tokenizer (words; Chinese and Japanese segmented).

    The lexical half of hybrid retrieval: it finds a quoted line whatever language the
    dense embedder was trained on, and anywhere in a long story.
    """

    def __init__(self, stopwords: tuple[str, ...] = ()) -> None:
        """``stopwords``: the languages whose stopwords are left out ("english", "chinese", ...);
        none named: Qdrant's default (English)."""
        from qdrant_edge import Bm25, Bm25Config, Language, StopwordsSet, TokenizerType

        languages = {getattr(Language, name.title()) for name in stopwords}
        dropped = StopwordsSet(languages=languages) if languages else None
        self.model = Bm25(Bm25Config(tokenizer=TokenizerType.Multilingual, stopwords=dropped))

    def document(self, text: str) -> tuple[list[int], list[float]]:
        v = self.model.embed_document(text)
        return list(v.indices), list(v.values)

    def query(self, text: str) -> tuple[list[int], list[float]]:
        v = self.model.embed_query(text)
        return list(v.indices), list(v.values)
