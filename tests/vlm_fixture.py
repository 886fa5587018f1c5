"""A tiny random Qwen2-VL, converted to GGUF (text + mmproj) by llama.cpp's own converter.

Built once from a config with a seed and cached under ``<cache>/test-models/``: the HF folder
(weights, the Qwen2 tokenizer with the vision tokens, a ChatML template, the image processor) and
the two GGUFs. ``hf_greedy`` is the transformers reference the llama.cpp side is compared with.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from PIL import Image

SEED = 1234
# Weights drawn at 0.2 rather than transformers' 0.02: at 0.02 these tiny layers hardly move the
# residual stream and attention is near uniform, so the answer ignored the M-RoPE positions (1-D
# positions gave the same tokens); at 0.2 positions and pixels both change it.
TEXT = dict(
    vocab_size=151936,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.2,
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
)
# depth >= 3: the converter maps visual.merger.mlp.{0,2} only for indices below the block count
VISION = dict(
    depth=4,
    initializer_range=0.2,
    embed_dim=64,
    hidden_size=64,
    num_heads=4,
    mlp_ratio=2,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# Qwen2-VL's ChatML, for string content: the converted GGUF carries it as its chat template
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Over 151,936 random output rows the top two logits come close enough for the two implementations'
# rounding (llama.cpp's f16 KV cache) to swap them: only these words' tokens keep their rows (the rest
# are zero, logit 0), so greedy picks among a few dozen with clear margins, and answers read as words.
ANSWER_WORDS = (
    "the cat sat on a mat and looked at two bright pictures of red green blue boats in a harbour"
    " while people danced under lights near old stone houses by the sea"
)
IMAGE_IN_PROMPT = "<|vision_start|><|image_pad|><|vision_end|>"  # what mtmd puts around an image
TOKENIZER_MODEL = "qwen2.5-coder-0.5b"
CONVERT = ("--outtype", "f32", "--model-name", "tiny-qwen2vl")


@dataclass(frozen=True)
class TinyVLM:
    """The HF folder and the two GGUFs converted from it."""

    hf_dir: Path
    model: Path
    mmproj: Path


def cache_base() -> Path:
    """``$GREENROOM_CACHE``, else ``~/.cache/greenroom``."""
    return Path(os.environ.get("GREENROOM_CACHE") or Path.home() / ".cache" / "greenroom").expanduser()


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def converter() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` that deploy/bootstrap.sh keeps (``GREENROOM_LLAMA_CONVERTER``
    names another folder); skipped where missing, a failure in CI."""
    configured = os.environ.get("GREENROOM_LLAMA_CONVERTER")
    version = importlib.metadata.version("llama_cpp_python")
    folder = Path(configured) if configured else cache_base() / f"llama.cpp-{version}-convert"
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        _skip_or_fail(f"llama.cpp's converter not found at {script}: run deploy/bootstrap.sh")
    return script


def tokenizer_gguf() -> Path:
    """The Qwen2.5-Coder GGUF `make setup` assembles: its tokenizer is Qwen2's, vision tokens included."""
    from greenroom.errors import UserError
    from greenroom.models.files import resolve_model_path

    try:
        return resolve_model_path(TOKENIZER_MODEL)
    except UserError as e:
        pytest.skip(f"the tokenizer source {TOKENIZER_MODEL} is not available ({e}): run `make setup`")


def _recipe_key(source: Path, script: Path) -> str:
    versions = {p: importlib.metadata.version(p) for p in ("transformers", "torch", "llama_cpp_python", "gguf")}
    code = [inspect.getsource(f) for f in (_save_hf, _convert)]
    recipe = [SEED, TEXT, VISION, CHAT_TEMPLATE, ANSWER_WORDS, CONVERT, code, source.name, source.stat().st_size]
    recipe += [str(script), versions]
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _save_hf(folder: Path, source: Path) -> None:
    from transformers import (
        AutoTokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(SEED)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=TEXT, vision_config=VISION))
    dead = torch.ones(TEXT["vocab_size"], dtype=torch.bool)
    dead[tokenizer(" " + ANSWER_WORDS)["input_ids"]] = False
    with torch.no_grad():
        model.lm_head.weight[dead] = 0.0
    model.save_pretrained(folder)
    Qwen2VLImageProcessorPil().save_pretrained(folder)  # the PIL one: no torchvision here
    tokenizer.save_pretrained(folder)


def _convert(script: Path, hf_dir: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(script.parent / "gguf-py")}
    cmd = [sys.executable, str(script), str(hf_dir), *CONVERT, "--outfile", str(out), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")


def build_tiny_vlm() -> TinyVLM:
    """The tiny model, built on first use (into a temporary folder, then renamed into place)."""
    script = converter()
    source = tokenizer_gguf()
    target = cache_base() / "test-models" / f"tiny-qwen2vl-{_recipe_key(source, script)}"
    tiny = TinyVLM(target / "hf", target / "tiny-qwen2vl-f32.gguf", target / "mmproj-tiny-qwen2vl-f32.gguf")
    if target.is_dir():
        return tiny
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _save_hf(work / "hf", source)
        _convert(script, work / "hf", work / tiny.model.name)
        _convert(script, work / "hf", work / tiny.mmproj.name, "--mmproj")
        work.chmod(0o755)
        work.rename(target)
    except OSError:
        if not target.is_dir():  # another session renamed its build into place first: use that
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tiny


def hf_inputs(tiny: TinyVLM, prompt: str, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    """The model inputs transformers gets for ``prompt``: each mtmd media marker (one per image) becomes
    Qwen2-VL's placeholder, wrapped as mtmd wraps an image, its pad repeated once per image token as
    Qwen2VLProcessor does (that class itself wants torchvision, for video)."""
    from llama_cpp.mtmd_cpp import mtmd_default_marker
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    marker = mtmd_default_marker().decode()
    assert prompt.count(marker) == len(images), "one media marker per image"
    config = AutoConfig.from_pretrained(tiny.hf_dir)
    parts, inputs = prompt.split(marker), {}
    if images:
        vision = AutoImageProcessor.from_pretrained(tiny.hf_dir)(images=images, return_tensors="pt")
        counts = (vision["image_grid_thw"].prod(-1) // config.vision_config.spatial_merge_size**2).tolist()
        pads = [IMAGE_IN_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * c) for c in counts]
        parts = [p for part, pad in zip(parts, [*pads, ""], strict=True) for p in (part, pad)]
        inputs = {"pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}
    ids = AutoTokenizer.from_pretrained(tiny.hf_dir)("".join(parts), return_tensors="pt")["input_ids"]
    if images:  # marks the image tokens for their M-RoPE positions (else: plain 1-D positions)
        inputs["mm_token_type_ids"] = (ids == config.image_token_id).int()
    return {"input_ids": ids, **inputs}


def hf_greedy(tiny: TinyVLM, prompt: str, images: list[Image.Image], n: int) -> list[int]:
    """Transformers' greedy continuation of ``prompt`` (with mtmd media markers, one per image): ``n``
    new token ids, fewer where it ends."""
    from transformers import Qwen2VLForConditionalGeneration

    inputs = hf_inputs(tiny, prompt, images)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny.hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()
