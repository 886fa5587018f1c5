"""The sentence embedder (sentence-transformers), loaded from a local folder or model package."""

from __future__ import annotations

import threading

import numpy as np

from models.files import resolve_model_path


class Embedder:
    """Normalised sentence vectors, plus windows that let long stories be found by any line."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(model)
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.name = path.name if path.name != "model" else path.parent.name
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time; torch uses all cores already

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit vectors as float32 rows."""
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(vectors, dtype=np.float32)

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

    def __init__(self) -> None:
        from qdrant_edge import Bm25, Bm25Config, TokenizerType

        self.model = Bm25(Bm25Config(tokenizer=TokenizerType.Multilingual))

    def document(self, text: str) -> tuple[list[int], list[float]]:
        v = self.model.embed_document(text)
        return list(v.indices), list(v.values)

    def query(self, text: str) -> tuple[list[int], list[float]]:
        v = self.model.embed_query(text)
        return list(v.indices), list(v.values)
