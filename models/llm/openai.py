"""An OpenAI-compatible inference server (vLLM, llama.cpp's server, TGI) as the language model.

Chat completions with streaming over server-sent events, stop sequences, timeouts, retries
with backoff on 429/5xx and refused connections (before the first token only: a reply is
never sent twice), an API key from the environment, and ``slots``: how many requests the server
takes at once (the caller's model throttle honours it). Token counts for prompt budgets come from
the server's tokenize endpoint, a tokenizer file, or an estimate (`tokens.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from greenroom.models.files import ModelFileError
from greenroom.models.llm import Generation, LLMUnavailable, Messages, Sampling
from greenroom.models.llm.tokens import server_root, token_counter

RETRY_STATUS = {429, 500, 502, 503, 504}
TEMPLATE_TOKENS = 5  # ChatML: <|im_start|>, the role, a newline, <|im_end|>, a newline


def text_of(content: str | list[dict[str, Any]]) -> str:
    """A message's words: its text, or its text parts (images are counted by the server's usage)."""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content)


class OpenAIChatLLM:
    """Chat completions from a server at ``base_url`` (``.../v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: str = "",
        api_key: str = "",
        n_ctx: int = 2048,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        slots: int = 1,
    ) -> None:
        if not base_url:
            raise ModelFileError('llm.backend is "openai" but llm.base_url is empty (the server\'s .../v1 address)')
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.n_ctx = n_ctx
        self.retries = retries
        self.backoff = backoff
        self.slots = slots  # the caller's model throttle lets this many requests run at once
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )
        self.count_tokens, self.tokenizer_id = token_counter(tokenizer, self._client, server_root(self.base_url), model)

    def ping(self, timeout: float = 3.0) -> None:
        """Raise LLMUnavailable unless the server answers ``GET /models`` (readiness)."""
        try:
            response = self._client.get("/models", timeout=timeout)
        except httpx.HTTPError as e:
            raise LLMUnavailable(f"the language model server at {self.base_url} is not answering ({e})") from None
        if response.status_code != 200:
            raise LLMUnavailable(f"the language model server at {self.base_url} answered {response.status_code}")

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        if messages and messages[-1]["role"] == "assistant":
            # a prime: the OpenAI API has no portable way to continue a message (vLLM and TGI would take
            # it for a finished turn), so the server answers afresh
            messages = messages[:-1]
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "frequency_penalty": sampling.frequency_penalty,
            "stream_options": {"include_usage": True},
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)[:4]  # the OpenAI API takes at most four
        # until the server reports usage: the messages plus a chat template's few tokens each
        gen.prompt_tokens = sum(self.count_tokens(text_of(m["content"])) + TEMPLATE_TOKENS for m in messages)
        for attempt in range(self.retries + 1):
            try:
                with self._client.stream("POST", "/chat/completions", json=body) as response:
                    if response.status_code in RETRY_STATUS and attempt < self.retries:
                        time.sleep(self._wait(response, attempt))
                        continue
                    if response.status_code != 200:
                        response.read()
                        raise LLMUnavailable(
                            f"the language model server at {self.base_url} answered "
                            f"{response.status_code}: {response.text[:200]}"
                        )
                    yield from self._events(response, gen)
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise LLMUnavailable(f"the language model server at {self.base_url} is not answering ({e})") from None
            except httpx.ReadTimeout:
                raise LLMUnavailable(
                    f"the language model server at {self.base_url} is too slow (no answer within the timeout)"
                ) from None

    def _wait(self, response: httpx.Response, attempt: int) -> float:
        after = response.headers.get("retry-after", "")
        return float(after) if after.replace(".", "", 1).isdigit() else self.backoff * 2**attempt

    @staticmethod
    def _events(response: httpx.Response, gen: Generation) -> Iterator[str]:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            event = json.loads(data)
            if usage := event.get("usage"):
                gen.prompt_tokens = usage.get("prompt_tokens", gen.prompt_tokens)
                gen.completion_tokens = usage.get("completion_tokens", gen.completion_tokens)
            for choice in event.get("choices", []):
                if text := (choice.get("delta") or {}).get("content"):
                    if not usage:
                        gen.completion_tokens += 1
                    yield text
                if choice.get("finish_reason"):
                    gen.finish_reason = choice["finish_reason"]
            if gen.cancel.is_set():
                gen.finish_reason = "cancelled"
                return
