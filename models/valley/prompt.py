"""Valley v1's visual token layout, its two inference templates and its answer post-processing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

PATCHES = 256
IM_START, IM_PATCH, IM_END = "<im_start>", "<im_patch>", "<im_end>"
VI_START, VI_FRAME, VI_END = "<vi_start>", "<vi_frame>", "<vi_end>"
VIDEO = "<video>"

# DEFAULT_SYSTEM of v1 `main` (template "v1"); the June release joins the same sentences without spaces.
SYSTEM_SENTENCES = (
    "You are Valley, a large language and vision assistant trained by ByteDance.",
    "You are able to understand the visual content or video that the user provides, and assist the user with a "
    "variety of tasks using natural language.",
    "Follow the instructions carefully and explain your answers in detail.",
)
TEMPLATES = ("v1", "june")


class Tokenizer(Protocol):
    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...


def video_tokens(frames: int) -> str:
    """What ``<video>`` becomes: ``<im_start>``, 256 patch positions, ``<im_end>``, ``<vi_start>``, one
    position per frame, ``<vi_end>``. The docs and the issue call this 271 tokens for 8 frames; the
    layout they give adds up to 268 (264 visual rows and 4 delimiters), which is what is built here."""
    return IM_START + IM_PATCH * PATCHES + IM_END + VI_START + VI_FRAME * frames + VI_END


@dataclass(frozen=True)
class TokenIds:
    """The six visual tokens' ids, looked up by name in the checkpoint's tokenizer."""

    im_start: int
    im_patch: int
    im_end: int
    vi_start: int
    vi_frame: int
    vi_end: int

    @classmethod
    def of(cls, tokenizer: Tokenizer, unk_id: int | None) -> TokenIds:
        names = (IM_START, IM_PATCH, IM_END, VI_START, VI_FRAME, VI_END)
        ids = tokenizer.convert_tokens_to_ids(list(names))
        missing = [n for n, i in zip(names, ids, strict=True) if i is None or i == unk_id]
        if missing:
            raise ValueError(f"the tokenizer lacks Valley's tokens {' '.join(missing)} (added_tokens.json missing?)")
        return cls(*ids)


@dataclass(frozen=True)
class VisualRun:
    """A run of placeholder positions and the visual rows that replace them."""

    start: int  # position in the token ids
    length: int
    row: int  # first row of the (256 + T) x H visual embeddings


def visual_runs(ids: list[int], tok: TokenIds, frames: int) -> list[VisualRun]:
    """Find every video placeholder and check its layout: ``<im_start>`` 256 patches ``<im_end>``
    ``<vi_start>`` T frames ``<vi_end>``.

    Valley's own code skips inserting the frame features under a bare ``except`` when the
    number of ``<vi_frame>`` tokens differs from the number of frames, so the model silently
    sees raw token embeddings. Here a mismatch is an error.
    """
    runs: list[VisualRun] = []
    for at, token in enumerate(ids):
        if token == tok.im_start:
            runs.append(_run(ids, at, tok.im_patch, PATCHES, tok.im_end, 0, "patch"))
        elif token == tok.vi_start:
            runs.append(_run(ids, at, tok.vi_frame, frames, tok.vi_end, PATCHES, "frame"))
    return runs


def _run(ids: list[int], at: int, fill: int, count: int, end: int, row: int, what: str) -> VisualRun:
    n = 0
    while at + 1 + n < len(ids) and ids[at + 1 + n] == fill:
        n += 1
    if n != count or at + 1 + n >= len(ids) or ids[at + 1 + n] != end:
        raise ValueError(f"video placeholder has {n} {what} tokens where the clip has {count} features")
    return VisualRun(at + 1, n, row)


def with_video(question: str) -> str:
    """Valley needs ``<video>`` in the first question (its issues #14, #16): add it when missing."""
    return question if VIDEO in question else f"{question}\n{VIDEO}"


def render(template: str, turns: list[tuple[str, str]], question: str, frames: int) -> str:
    """The prompt for ``question`` after earlier (question, answer) turns about the same clip.

    The video goes into the first question only (as ``run_valley_conv.py`` does).
    ``v1``: ``valley_model.build_inputs`` of v1 ``main``. That code drops earlier questions
    without ``<video>`` and spells the role "Assistent" in earlier turns; both are fixed here.
    ``june``: ``conversation.simple_conv_video`` of the June 2023 release and web demo.
    """
    questions = [q for q, _ in turns] + [question]
    questions[0] = with_video(questions[0]).replace(VIDEO, video_tokens(frames))
    questions[1:] = [q.replace(VIDEO, "") for q in questions[1:]]
    answers = [a for _, a in turns]
    if template == "v1":
        text = " ".join(SYSTEM_SENTENCES) + "\n\n###"
        for q, a in zip(questions[:-1], answers, strict=True):
            text += f" Human: {q} \n### Assistant: {a} \n###"
        return text + f" Human: {questions[-1]} \n###"
    if template == "june":
        text = "".join(SYSTEM_SENTENCES) + "###Human: Hi!###Assistant: Hi there!  How can I help you today?\n"
        for q, a in zip(questions[:-1], answers, strict=True):
            text += f"###Human: {q}###Assistant: {a}"
        return text + f"###Human: {questions[-1]}###Assistant:"
    raise ValueError(f"unknown Valley template '{template}' (choose {' or '.join(TEMPLATES)})")


_AROUND_RUN = re.compile(r"\s*(" + re.escape(IM_START) + ".*?" + re.escape(VI_END) + r")\s*", re.S)


def encode(tokenizer: Callable, text: str) -> list[int]:
    """The prompt's token ids as Valley was trained on them.

    Valley's training (and v1 ``main`` inference with a slow tokenizer) used the slow LLaMA tokenizer of
    transformers 4.28, which strips whitespace on both sides of added tokens: the line break before
    ``<im_start>`` and the " \n" after ``<vi_end>`` never reached the model. Tokenizers today keep them,
    so they are stripped from the text here; checked against the original code (README, "Checked against
    the original code"). (``run_valley.py``'s fast ``AutoTokenizer``, converted from ``tokenizer.model``,
    does not recognise Valley's tokens after a line break at all, so the video is silently left out.)
    """
    return tokenizer(_AROUND_RUN.sub(r"\1", text)).input_ids


_PREFIXES = ("###", "Assistant:", "Response:", "Valley:")


def postprocess(text: str) -> str:
    """``process_response``: strip leading role prefixes and ``###``, cut at the next ``###``."""
    text = text.strip()
    while (prefix := next((p for p in _PREFIXES if text.startswith(p)), None)) is not None:
        text = text[len(prefix) :].strip()
    return text.split("###", 1)[0].strip()
