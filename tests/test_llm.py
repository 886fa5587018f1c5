"""The llama.cpp backend with the real SmolLM2 GGUF from its package."""

import pytest

from greenroom.models.files import ModelFileError
from greenroom.models.llm import Generation, LlamaCppLLM, Sampling

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours of the rainbow."},
]


def test_multi_token_generation_works(llm):
    # A one-token smoke test passes even on the crashing native build; this decodes a real prompt.
    gen = Generation()
    text = "".join(llm.stream(MESSAGES, Sampling(max_tokens=24, temperature=0.0), gen))
    assert text.strip() and gen.completion_tokens > 5 and gen.prompt_tokens > 20


def test_greedy_generation_is_repeatable_and_stop_strings_cut(llm):
    first = "".join(llm.stream(MESSAGES, Sampling(max_tokens=16, temperature=0.0), Generation()))
    second = "".join(llm.stream(MESSAGES, Sampling(max_tokens=16, temperature=0.0), Generation()))
    assert first == second
    word = first.split()[1]
    cut = "".join(llm.stream(MESSAGES, Sampling(max_tokens=16, temperature=0.0, stop=(word,)), Generation()))
    assert word not in cut and first.startswith(cut.rstrip())


def test_cancel_stops_generation_early(llm):
    gen = Generation()
    pieces = []
    for piece in llm.stream(MESSAGES, Sampling(max_tokens=64, temperature=0.0), gen):
        pieces.append(piece)
        if len(pieces) == 3:
            gen.cancel.set()
    assert len(pieces) <= 4 and gen.finish_reason == "cancelled"


def test_token_counts_use_the_model_tokenizer(llm):
    assert llm.count_tokens("hello") >= 1
    assert llm.count_tokens("hello " * 50) > llm.count_tokens("hello")


def test_missing_and_corrupt_model_files_get_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        LlamaCppLLM(str(tmp_path / "none.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ModelFileError, match="not a GGUF model file"):
        LlamaCppLLM(str(junk))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(ModelFileError, match="llama.cpp could not load it"):
        LlamaCppLLM(str(truncated))
    with pytest.raises(ModelFileError, match="model package 'no_such_pkg' is not installed"):
        LlamaCppLLM("package:no_such_pkg/x.gguf")


def test_sha256_mismatch_is_refused(tmp_path, llm):
    from greenroom.core.config import LlmSection

    with pytest.raises(ModelFileError, match="does not match the configured"):
        LlamaCppLLM(LlmSection().model, sha256="0" * 64)
