"""The language model behind one interface: llama.cpp in-process for GGUF files.

Generation is a blocking iterator (the caller runs it off the event loop). The prompt is
rendered with the model's own chat template and tokenised here, so the caller learns the
exact prompt and its size. What llama.cpp computed for a conversation's last prompt is kept
and lined up with the next one (`kv_cache`), so a follow-up evaluates only what is new.

A final ``assistant`` message primes the reply: the model continues it, and the stream yields
only what follows it. A backend that cannot continue a message (the OpenAI API has no portable
way) answers afresh instead; the caller copes with both (`core.cleanup.join_prime`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from greenroom.errors import UserError
from greenroom.models.files import ModelFileError, pinned_sha256, resolve_model_path, verified
from greenroom.models.llm.kv_cache import ConversationCache

Messages = list[dict[str, str]]


class LLMUnavailable(UserError):
    """An inference server that did not answer: users read a short line, the log and the admin
    the ``detail`` (where the server is and what it said)."""

    log_level = 30  # logging.WARNING

    def __init__(self, detail: str) -> None:
        super().__init__("I can't reach my language model right now; please try again in a minute.")
        self.detail = detail


class ContextFull(UserError):
    """A prompt that leaves no room for a reply (the prompt budgets should prevent it)."""

    def __init__(self, tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"That doesn't fit my memory ({tokens} of {n_ctx} tokens); send something shorter, or /reset to start over."
        )


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 160
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.1  # llama.cpp's (in process); the OpenAI API has no such parameter
    frequency_penalty: float = 0.0  # the OpenAI API's, which llama.cpp has too
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Generation:
    """Filled in while a reply streams: prompt size, tokens produced, why it stopped."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, not evaluated again (llama.cpp's KV cache)
    completion_tokens: int = 0
    finish_reason: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    conversation: str = ""  # whose turn: llama.cpp keeps each conversation's cache apart


class LLM(Protocol):
    """A language model. ``stream`` is not safe to call from more threads than ``slots`` at once:
    callers hold the one model throttle (`core.persona`), sized by ``slots``."""

    name: str
    n_ctx: int
    tokenizer_id: str
    slots: int

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]: ...


class LlamaCppLLM:
    """A GGUF model in llama.cpp (llama-cpp-python)."""

    def __init__(
        self,
        model: str,
        sha256: str = "",
        n_ctx: int = 2048,
        n_threads: int = 0,
        seed: int = 0,
        kernels: str = "auto",
        kv_cache_mb: int = 256,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from greenroom.models.llm.kernels import load_cpu_kernels

        path = resolve_model_path(model)
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelFileError(f"{path}: not a GGUF model file")
        sha256 = pinned_sha256(model, sha256)  # a catalogue name carries its own pin
        verified(path, sha256)
        load_cpu_kernels(kernels, path)
        try:
            # llama-cpp-python defaults to half the cores; generation here is compute-bound, use them all.
            self.llama = Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), seed=seed, verbose=False
            )
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{path}: llama.cpp could not load it (corrupt or unsupported GGUF: {e})") from None
        self.name = path.stem
        self.n_ctx = self.llama.n_ctx()
        self.tokenizer_id = sha256 or f"{path}:{path.stat().st_size}"
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelFileError(f"{path}: the GGUF has no chat template")
        eos = self.llama.token_eos()
        bos = self.llama.token_bos()
        vocab = self.llama._model
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=vocab.token_get_text(eos),
            bos_token=vocab.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.slots = 1  # one llama.cpp context: one generation at a time
        self.cache = ConversationCache(self.llama, kv_cache_mb << 20)
        # prompts repeat the same persona, stories and history every turn
        self.count_tokens = lru_cache(maxsize=16384)(self._count_tokens)

    def _count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, messages: Messages) -> tuple[list[int], list[str]]:
        """The templated prompt as tokens (a final assistant message left open, to be continued), and
        the template's own stop strings."""
        primed = bool(messages) and messages[-1]["role"] == "assistant"
        rendered = self.formatter(messages=messages[:-1] if primed else messages)  # type: ignore[arg-type]  # plain dicts
        text = rendered.prompt + (messages[-1]["content"] if primed else "")
        tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        stops = [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop or [])
        return tokens, stops

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        tokens, template_stops = self.prompt_tokens(messages)
        gen.prompt_tokens = len(tokens)
        budget = min(sampling.max_tokens, self.n_ctx - len(tokens))
        if budget <= 0:
            raise ContextFull(len(tokens), self.n_ctx)
        gen.cached_tokens = self.cache.prepare(gen.conversation, tokens)
        chunks = self.llama.create_completion(
            prompt=tokens,
            max_tokens=budget,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            stop=[*template_stops, *sampling.stop],
            seed=sampling.seed,
            stream=True,
        )
        assert isinstance(chunks, Iterator)  # stream=True
        try:
            for chunk in chunks:
                choice: dict[str, Any] = dict(chunk["choices"][0])
                if choice.get("text"):
                    gen.completion_tokens += 1
                    yield choice["text"]
                if choice.get("finish_reason"):
                    gen.finish_reason = choice["finish_reason"]
                if gen.cancel.is_set():
                    gen.finish_reason = "cancelled"
                    break
        finally:
            chunks.close()  # type: ignore[attr-defined]  # a generator
