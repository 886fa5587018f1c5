"""The CPU runtime: the language model as GGUF in llama.cpp, visual rows injected through
``llama_batch.embd`` (llama.cpp's own mmproj/clip path cannot run Valley: no plain linear
projector, CLS dropped, no temporal pooling)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llama_cpp
import numpy as np

from greenroom.models.llm.kernels import load_cpu_kernels
from greenroom.models.valley.errors import ClipThreadTooLong
from greenroom.models.valley.prompt import VisualRun


class LlamaCppLanguage:
    """Text runs go in as token batches, visual runs as embedding batches, at most ``n_batch`` rows each."""

    def __init__(
        self, gguf: Path, n_ctx: int = 2048, n_threads: int = 0, n_batch: int = 512, kernels: str = "auto"
    ) -> None:
        load_cpu_kernels(kernels, gguf)
        self.llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=n_threads or os.cpu_count(),  # as the chat model: every core, not half
            verbose=False,
        )
        self.n_ctx = self.llm.n_ctx()
        self.eos = self.llm.token_eos()
        self.n_batch = n_batch
        self.n_embd = llama_cpp.llama_model_n_embd(self.llm._model.model)
        self.n_vocab = self.llm.n_vocab()
        self.ctx = self.llm._ctx.ctx
        self.pos = 0

    def prefill(self, ids: list[int], rows: np.ndarray, runs: list[VisualRun]) -> np.ndarray:
        if rows.shape[1] != self.n_embd:
            raise ValueError(f"visual rows have {rows.shape[1]} dimensions, the language model {self.n_embd}")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.pos = 0
        at = 0
        for run in runs:
            self.feed(ids[at : run.start])
            self._embeddings(np.ascontiguousarray(rows[run.row : run.row + run.length], dtype=np.float32))
            at = run.start + run.length
        self.feed(ids[at:], logits=True)  # the prompt always ends in text, so the last row has logits
        return self.logits()

    def step(self, token: int) -> np.ndarray:
        self.feed([token], logits=True)
        return self.logits()

    def logits(self) -> np.ndarray:
        """The last evaluated position's logits."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def feed(self, tokens: list[int], logits: bool = False) -> None:
        """Evaluate ``tokens`` from position ``pos`` on (logits for the last one when asked)."""
        for at in range(0, len(tokens), self.n_batch):
            chunk = tokens[at : at + self.n_batch]
            last = logits and at + len(chunk) == len(tokens)
            self._decode(
                len(chunk), 0, lambda b, chunk=chunk: [b.token.__setitem__(i, t) for i, t in enumerate(chunk)], last
            )

    def _embeddings(self, rows: np.ndarray) -> None:
        for at in range(0, len(rows), self.n_batch):
            chunk = np.ascontiguousarray(rows[at : at + self.n_batch])
            self._decode(
                len(chunk),
                self.n_embd,
                lambda b, chunk=chunk: ctypes.memmove(b.embd, chunk.ctypes.data, chunk.nbytes),
                False,
            )

    def _decode(self, n: int, n_embd: int, fill, logits_last: bool) -> None:
        if self.pos + n > self.n_ctx:
            raise ClipThreadTooLong(self.n_ctx)
        batch = llama_cpp.llama_batch_init(n, n_embd, 1)
        try:
            fill(batch)
            for i in range(n):
                batch.pos[i] = self.pos + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = logits_last and i == n - 1
            batch.n_tokens = n
            if (rc := llama_cpp.llama_decode(self.ctx, batch)) != 0:
                raise RuntimeError(f"llama_decode failed ({rc})")
        finally:
            llama_cpp.llama_batch_free(batch)
        self.pos += n
