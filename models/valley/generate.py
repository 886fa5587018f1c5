"""One decoding loop for both runtimes: greedy or temperature sampling, stop on EOS or ``###``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from greenroom.models.valley.prompt import VisualRun, postprocess
from greenroom.models.video.answer import Answer, Decoding, sample

STOP = "###"


class LanguageRuntime(Protocol):
    """A language model that takes token ids with visual rows spliced in, then one token at a time."""

    n_ctx: int
    eos: int

    def prefill(self, ids: list[int], rows: np.ndarray, runs: list[VisualRun]) -> np.ndarray: ...

    def step(self, token: int) -> np.ndarray: ...


def generate(
    runtime: LanguageRuntime,
    ids: list[int],
    rows: np.ndarray,
    runs: list[VisualRun],
    decode: Callable[[list[int]], str],
    decoding: Decoding,
) -> Answer:
    """Prefill the prompt, then sample until EOS, ``###`` in the text, or ``max_new_tokens``."""
    start = time.perf_counter()
    logits = runtime.prefill(ids, rows, runs)
    answer = Answer("", prompt_tokens=len(ids))
    budget = min(decoding.max_new_tokens, runtime.n_ctx - len(ids))
    text = sample(logits, runtime.step, answer, budget, lambda t: t == runtime.eos, decode, decoding, start, STOP)
    answer.text = postprocess(text)
    answer.seconds = time.perf_counter() - start
    return answer
