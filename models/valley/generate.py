"""One decoding loop for both runtimes: greedy or temperature sampling, stop on EOS or ``###``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from greenroom.models.valley.prompt import VisualRun, postprocess

STOP = "###"


class LanguageRuntime(Protocol):
    """A language model that takes token ids with visual rows spliced in, then one token at a time."""

    n_ctx: int
    eos: int

    def prefill(self, ids: list[int], rows: np.ndarray, runs: list[VisualRun]) -> np.ndarray: ...

    def step(self, token: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy, as v1 main's run_valley.py
    seed: int = 0


@dataclass
class Answer:
    text: str
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    first_token_s: float = 0.0
    seconds: float = 0.0


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
        token = _pick(logits, decoding.temperature, rng)
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


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    p = np.exp(scaled)
    return int(rng.choice(len(p), p=p / p.sum()))
