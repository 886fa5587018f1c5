"""Counting tokens for prompt budgets when the model runs on a server (the OpenAI API has no
tokenizer endpoint).

`llm.tokenizer` chooses: "" (the default) asks the server's own tokenize endpoint when it has one
(llama.cpp's server, llama-cpp-python's, vLLM) and otherwise estimates; "server" insists on the
endpoint; "estimate" never asks; anything else is a file: a GGUF (its vocabulary only) or a
Hugging Face `tokenizer.json`. The estimate errs on the long side (3 characters a token for
alphabetic text, two tokens a CJK character, as byte-level vocabularies without CJK need, plus
10 %), so budgets keep the prompt inside the context.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from functools import lru_cache

import httpx

from greenroom.models.files import ModelFileError, resolve_model_path

log = logging.getLogger(__name__)

CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
Count = Callable[[str], int]


def estimate(text: str) -> int:
    """A count no smaller than most tokenizers give: a CJK character is two, other text 3 characters
    a token, plus 10 %."""
    cjk = len(CJK.findall(text))
    return math.ceil(1.1 * (2 * cjk + (len(text) - cjk) / 3))


class ServerCount:
    """Counts with the server's tokenize endpoint (found on first use: llama-cpp-python's, llama.cpp's
    or vLLM's), a fixed overhead such as BOS taken off; an estimate while the server cannot be
    reached, and for good when it has no such endpoint (unless ``required``)."""

    def __init__(self, client: httpx.Client, root: str, model: str, required: bool) -> None:
        self.client, self.root, self.required = client, root, required
        self.endpoints: list[tuple[str, Callable[[str], dict], Callable[[dict], int]]] = [
            (f"{root}/extras/tokenize/count", lambda t: {"input": t}, lambda r: int(r["count"])),
            (f"{root}/tokenize", lambda t: {"content": t}, lambda r: len(r["tokens"])),
            (f"{root}/tokenize", lambda t: {"model": model, "prompt": t}, lambda r: int(r["count"])),
        ]
        self.found: tuple[str, Callable[[str], dict], Callable[[dict], int], int] | None = None
        self.absent = False

    def _ask(self, url: str, body: Callable[[str], dict], read: Callable[[dict], int], text: str) -> int:
        response = self.client.post(url, json=body(text))
        response.raise_for_status()
        return read(response.json())

    def _find(self) -> None:
        for url, body, read in self.endpoints:
            try:
                overhead = self._ask(url, body, read, "")
            except httpx.TransportError:
                raise  # not reachable now: try again next time
            except (httpx.HTTPStatusError, KeyError, TypeError, ValueError):
                continue
            log.info("counting tokens with the server's %s", url)
            self.found = (url, body, read, overhead)
            return
        if self.required:
            raise ModelFileError(f'llm.tokenizer is "server" but the server at {self.root} has no tokenize endpoint')
        log.warning("the server at %s has no tokenize endpoint: prompt budgets use an estimate", self.root)
        self.absent = True

    def __call__(self, text: str) -> int:
        try:
            if self.found is None and not self.absent:
                self._find()
            if self.found is None:
                return estimate(text)
            url, body, read, overhead = self.found
            return max(0, self._ask(url, body, read, text) - overhead)
        except httpx.HTTPError:
            return estimate(text)


def _file_counter(spec: str) -> tuple[Count, str]:
    path = resolve_model_path(spec)
    if path.name.endswith(".json"):
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the library raises its own exception type
            raise ModelFileError(f"{spec}: not a tokenizer.json ({e})") from None
        tokenizer.no_padding()  # a file may pad or cut every input to a fixed length
        tokenizer.no_truncation()
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids), f"{path}:tokenizer"
    from llama_cpp import Llama

    try:
        vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{spec}: cannot read its tokenizer ({e})") from None
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)), f"{path}:vocab"


def token_counter(spec: str, client: httpx.Client, root: str, model: str) -> tuple[Count, str]:
    """A cached counter and its id (stored counts are redone when the id changes)."""
    if spec in ("", "server"):
        counter = ServerCount(client, root, model, required=spec == "server")
        return lru_cache(maxsize=16384)(counter), f"server:{root}:{model}"
    if spec == "estimate":
        return estimate, "estimate"
    count, tokenizer_id = _file_counter(spec)
    return lru_cache(maxsize=16384)(count), tokenizer_id


def server_root(base_url: str) -> str:
    """``http://host:port`` of a ``.../v1`` base URL (where the tokenize endpoints live)."""
    return base_url.rstrip("/").removesuffix("/v1")
