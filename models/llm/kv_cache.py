"""What llama.cpp keeps between a conversation's turns, so that a follow-up is cheap.

- **Reuse past a gap** (as llama.cpp's server does with ``--cache-reuse``): past the common
  prefix of the cached tokens and the new prompt, a run of at least ``MIN_RUN`` prompt tokens
  found further along in the cache is moved back: the cached tokens before it are removed and
  its positions shifted. A prompt that dropped the last turn's scenes, or the oldest history
  turn, keeps the rest of its cache. The moved entries were computed with the removed tokens in
  view: the same approximation the llama.cpp server makes.
- **A state per conversation**: when another conversation's turn comes, the current one's KV
  cells are copied out (``llama_state_seq_get_data``) into a least-recently-used store under a
  byte cap, and copied back on its next turn.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_RUN = 16  # tokens: a shorter match may be a common phrase, not the same text
SEQ = 0  # llama-cpp-python decodes everything as sequence 0


@dataclass(frozen=True)
class Saved:
    tokens: np.ndarray
    state: bytes


class ConversationCache:
    """The KV cache of one llama.cpp context, shared by conversations in turn."""

    def __init__(self, llama: Any, cap_bytes: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llama = llama
        self.cap = cap_bytes
        self.saved: OrderedDict[str, Saved] = OrderedDict()
        self.current = ""
        memory = llama._ctx.memory
        self.can_shift = memory is not None and bool(llama_cpp.llama_memory_can_shift(memory))

    @property
    def saved_bytes(self) -> int:
        return sum(len(s.state) for s in self.saved.values())

    def prepare(self, conversation: str, tokens: Sequence[int]) -> int:
        """Bring this conversation's cache in and line it up with ``tokens``; the tokens
        llama.cpp will not evaluate again."""
        if conversation != self.current:
            self._switch(conversation)
        if self.can_shift:
            self._reuse(tokens)
        cached = self.llama.input_ids[: self.llama.n_tokens]
        return _common_prefix(cached, tokens)

    def _switch(self, conversation: str) -> None:
        """Save the outgoing conversation's cells; restore the incoming one's if kept (else the
        context keeps what it has: the same system prompt may still be a prefix)."""
        if self.current and self.llama.n_tokens and self.cap:
            self._save(self.current)
        self.current = conversation
        saved = self.saved.pop(conversation, None)
        if saved is not None:
            self._restore(saved)

    def _save(self, conversation: str) -> None:
        ctx = self.llama._ctx.ctx
        size = self.lib.llama_state_seq_get_size(ctx, SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = self.lib.llama_state_seq_get_data(ctx, buffer, size, SEQ)
        tokens = self.llama.input_ids[: self.llama.n_tokens].copy()
        self.saved.pop(conversation, None)
        self.saved[conversation] = Saved(tokens, bytes(buffer)[:written])
        while self.saved and self.saved_bytes > self.cap:
            self.saved.popitem(last=False)

    def _restore(self, saved: Saved) -> None:
        self.llama._ctx.kv_cache_clear()
        buffer = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
        if self.lib.llama_state_seq_set_data(self.llama._ctx.ctx, buffer, len(saved.state), SEQ) == 0:
            self.llama.n_tokens = 0  # not restorable (another model's state): start clean
            return
        self.llama.input_ids[: len(saved.tokens)] = saved.tokens
        self.llama.n_tokens = len(saved.tokens)
        self.llama._requires_eval = True  # no logits came with the cells

    def _reuse(self, tokens: Sequence[int]) -> None:
        """Move runs of the new prompt found later in the cache back to where the prompt needs
        them; llama-cpp-python then sees them as part of the common prefix."""
        llama, memory = self.llama, self.llama._ctx.memory
        cached = llama.input_ids[: llama.n_tokens].tolist()
        head_p = head_c = _common_prefix(cached, tokens)
        moved = False
        while head_c < len(cached) and head_p < len(tokens):
            run = _run(cached, head_c, tokens, head_p)
            if run < MIN_RUN:
                head_c += 1
                continue
            self.lib.llama_memory_seq_rm(memory, SEQ, head_p, head_c)
            self.lib.llama_memory_seq_add(memory, SEQ, head_c, head_c + run, head_p - head_c)
            cached[head_p : head_p + run] = cached[head_c : head_c + run]
            head_c += run
            head_p += run
            moved = True
        if moved:
            self.lib.llama_memory_seq_rm(memory, SEQ, head_p, -1)
            llama.input_ids[:head_p] = cached[:head_p]
            llama.n_tokens = head_p
            llama._requires_eval = True


def _common_prefix(cached: Sequence[int] | np.ndarray, tokens: Sequence[int]) -> int:
    return _run(cached, 0, tokens, 0)


def _run(a: Sequence[int] | np.ndarray, i: int, b: Sequence[int], j: int) -> int:
    """How many tokens ``a`` from ``i`` and ``b`` from ``j`` have in common."""
    n = 0
    while i + n < len(a) and j + n < len(b) and a[i + n] == b[j + n]:
        n += 1
    return n
