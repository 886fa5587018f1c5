"""One decoding loop for both runtimes: greedy or temperature sampling, stop on EOS or ``###``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from greenroom.models.valley.prompt import VisualRun, postprocess
from greenroom.models.video.answer import Answer, Decoding, pick

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
    rng = np.random.default_rng(decoding.seed)
    logits = runtime.prefill(ids, rows, runs)
    answer = Answer("", prompt_tokens=len(ids))
    text = ""
    for _ in range(min(decoding.max_new_tokens, runtime.n_ctx - len(ids))):
        token = pick(logits, decoding.temperature, rng)
        if not answer.tokens:
            answer.first_token_s = time.perf_counter() - start
        if token == runtime.eos:
            break
        answer.tokens.append(token)
        text = decode(answer.tokens)
        if STOP in text:
            break
        logits = runtime.step(token)
    answer.text = postprocess(text)
    answer.seconds = time.perf_counter() - start
    return answer
