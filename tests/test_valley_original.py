"""Greenroom against Valley v1's own code, on a tiny random checkpoint: the same pixels, prompt ids,
visual rows and greedy tokens, on both runtimes.

Valley's code is not on the package index, so this runs only where ``GREENROOM_VALLEY_SOURCE`` names a
checkout of RupertLuo/Valley (``main``) and ``GREENROOM_VALLEY_PYTHON`` a Python with its requirements
(transformers 4.28-4.31, decord); ``tests/valley_original.py`` runs it there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from greenroom.models.valley.convert import convert
from greenroom.models.valley.model import load_valley
from greenroom.models.valley.prompt import encode, render
from greenroom.models.video.answer import Decoding
from greenroom.models.video.frames import read_frames
from greenroom.models.video.transform import video_tensor
from tests.clips import lossless_clip, numbered_frames
from tests.conftest import reference_data
from tests.valley_fixture import build_checkpoint, tower_config

QUESTION = "Describe this video concisely."
NEW_TOKENS = 24


def sample_clips() -> list[Path]:
    """Valley's own sample clips when the reference data is here, else none."""
    try:
        return sorted((reference_data("valley_samples") / "sample_video").glob("*.mp4"))
    except pytest.skip.Exception:
        return []


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    source, python = os.environ.get("GREENROOM_VALLEY_SOURCE"), os.environ.get("GREENROOM_VALLEY_PYTHON")
    if not source or not python:
        pytest.skip(
            "Valley's own code is not on the package index: set GREENROOM_VALLEY_SOURCE (a checkout of "
            "RupertLuo/Valley) and GREENROOM_VALLEY_PYTHON (a Python with its requirements) to compare"
        )
    if not (Path(source) / "valley" / "model" / "valley_model.py").is_file():
        pytest.fail(f"GREENROOM_VALLEY_SOURCE={source} is not a checkout of RupertLuo/Valley")
    base = tmp_path_factory.mktemp("original")
    # the original projects 1024-d zeros; its transformers (4.28) predates grouped key/value heads, as do
    # the released checkpoints
    checkpoint = build_checkpoint(base / "checkpoint", vision_width=1024, kv_heads=4)
    (base / "tower.json").write_text(json.dumps(tower_config(1024)))
    clips = [
        lossless_clip(base / "wide.mkv", numbered_frames(40, 320, 240)),
        lossless_clip(base / "short.mkv", numbered_frames(3, 200, 300)),
        *sample_clips(),
    ]
    out = base / "out"
    out.mkdir()
    subprocess.run(
        [
            python,
            str(Path(__file__).with_name("valley_original.py")),
            source,
            str(checkpoint),
            str(base / "tower.json"),
            str(out),
            f"{QUESTION}\n<video>",
            str(NEW_TOKENS),
            *map(str, clips),
        ],
        check=True,
        timeout=900,
    )
    convert(checkpoint, base / "cpu", "f32")
    runtimes = {
        "torch": load_valley(checkpoint, "gpu", device="cpu", vision_dtype="float32"),
        "llama.cpp": load_valley(base / "cpu", "cpu", vision_dtype="float32"),
    }
    return json.loads((out / "original.json").read_text()), out, runtimes


def test_frames_and_pixels_are_the_originals(original) -> None:
    results, out, _ = original
    for i, result in enumerate(results):
        pixels = video_tensor(read_frames(result["clip"]).images).numpy()
        assert np.array_equal(pixels, np.load(out / f"pixels{i}.npy")), result["clip"]


@pytest.mark.parametrize("runtime", ["torch", "llama.cpp"])
def test_prompt_visual_rows_and_greedy_tokens_are_the_originals(original, runtime) -> None:
    results, out, runtimes = original
    valley = runtimes[runtime]
    for i, result in enumerate(results):
        clip = valley.clip(result["clip"])
        np.testing.assert_allclose(clip.rows, np.load(out / f"rows{i}.npy"), atol=1e-5)
        assert encode(valley.tokenizer, render(valley.template, [], QUESTION, len(clip.indices))) == result["ids"]
        answer = valley.ask(clip, QUESTION, decoding=Decoding(max_new_tokens=NEW_TOKENS))
        generated = result["generated"]
        assert answer.tokens == (generated[:-1] if generated[-1:] == [valley.language.eos] else generated)
