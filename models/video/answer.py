"""What every video backend returns, and how it samples: :class:`Answer`, :class:`Decoding`, ``pick``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_QUESTION = "Describe this video concisely."


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy, as Valley v1's run_valley.py
    seed: int = 0


@dataclass
class Answer:
    """An answer about a clip, with where its time went (seconds)."""

    text: str
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    first_token_s: float = 0.0
    seconds: float = 0.0
    vision_s: float = 0.0  # encoding the frames (0 when a follow-up reused them)
    reused: bool = False  # the clip's encoded prefix was reused


def pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The next token: the most likely (temperature 0), else sampled at ``temperature``."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    p = np.exp(scaled)
    return int(rng.choice(len(p), p=p / p.sum()))


def sample(
    logits: np.ndarray,
    step: Callable[[int], np.ndarray],
    answer: Answer,
    budget: int,
    ends: Callable[[int], bool],
    decode: Callable[[list[int]], str],
    decoding: Decoding,
    start: float,
    stop: str = "",
) -> str:
    """Sample after ``logits`` into ``answer.tokens`` until an end token, ``stop`` in the text, or
    ``budget`` tokens; ``start`` (perf_counter) dates the first token. Returns the text."""
    rng = np.random.default_rng(decoding.seed)
    text = ""
    for _ in range(budget):
        token = pick(logits, decoding.temperature, rng)
        if not answer.tokens:
            answer.first_token_s = time.perf_counter() - start
        if ends(token):
            break
        answer.tokens.append(token)
        text = decode(answer.tokens)
        if stop and stop in text:
            break
        logits = step(token)
    return text
