"""A language model stand-in for the chaos run: it streams ``ok #TAG word … done.`` at a set pace, where
TAG is the last ``#number`` in the user's message, so every reply names the message it answers."""

from __future__ import annotations

import re
from collections.abc import Iterator

from greenroom.models.llm import Generation, Messages, Sampling

TAG = re.compile(r"#(\d+)")
END = "done."


def tag_of(text: str) -> str | None:
    """The last ``#number`` in a text (the message a reply answers), or None."""
    found = TAG.findall(text)
    return found[-1] if found else None


def is_answer(text: str, tag: str) -> bool:
    """Whether ``text`` is the stub's complete reply to message ``#tag``."""
    return text.startswith(f"ok #{tag} ") and text.endswith(END)


class StubLLM:
    """Implements the `LLM` protocol (models/llm): no model, ``words`` filler pieces ``delay`` s apart."""

    name = "chaos-stub"
    n_ctx = 2048
    tokenizer_id = "chaos-stub"

    def __init__(self, words: int = 3, delay: float = 0.0, slots: int = 1) -> None:
        self.words = words
        self.delay = delay
        self.slots = slots

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        gen.prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
        tag = tag_of(messages[-1]["content"]) or "?"
        for piece in [f"ok #{tag}", *[" word"] * self.words, f" {END}"]:
            if self.delay:
                gen.cancel.wait(self.delay)  # the model's pace; a cancelled turn stops at once
            if gen.cancel.is_set():
                gen.finish_reason = "cancelled"
                return
            gen.completion_tokens += 1
            yield piece
        gen.finish_reason = "stop"
