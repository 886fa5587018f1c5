"""Valley's own sample clips (MSR-VTT, from the Valley repository; licensed data outside the repo):
frame counts and indices as documented, frames identical to a full independent decode, the
v1 crop geometry, and the sample questions run through the CPU runtime of a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from greenroom.models.valley.convert import convert
from greenroom.models.valley.model import load_valley
from greenroom.models.video.answer import Decoding
from greenroom.models.video.frames import read_frames
from greenroom.models.video.transform import CLIP_MEAN, CLIP_STD, video_tensor
from tests.clips import decode_every_frame
from tests.conftest import reference_data
from tests.valley_fixture import build_checkpoint

pytestmark = pytest.mark.reference

INDICES = {  # ../shared/docs/valley.md, section 8
    "video7412.mp4": (330, [0, 47, 94, 141, 188, 235, 282, 329]),
    "video7757.mp4": (330, [0, 47, 94, 141, 188, 235, 282, 329]),
    "video7929.mp4": (480, [0, 68, 136, 205, 273, 342, 410, 479]),
    "video8302.mp4": (360, [0, 51, 102, 153, 205, 256, 307, 359]),
}


@pytest.fixture(scope="module")
def samples() -> Path:
    return reference_data("valley_samples")


@pytest.mark.parametrize("name", sorted(INDICES))
def test_frame_counts_and_indices_match_the_documented_ones(samples, name) -> None:
    frames = read_frames(samples / "sample_video" / name)
    assert (frames.total, frames.indices) == INDICES[name]
    assert all(image.size == (320, 240) for image in frames.images)


def test_frames_equal_a_full_decode_picked_by_index(samples) -> None:
    path = samples / "sample_video" / "video7929.mp4"
    every = decode_every_frame(path, 320, 240)
    frames = read_frames(path)
    assert len(every) == frames.total
    for index, image in zip(frames.indices, frames.images):
        assert np.array_equal(np.asarray(image), every[index])


def test_v1_geometry_on_a_sample_frame(samples) -> None:
    image = read_frames(samples / "sample_video" / "video8302.mp4").images[3]
    resized = np.asarray(image.resize((341, 256), Image.BILINEAR), dtype=np.float64) / 255.0
    expected = (resized[16:240, 58:282] - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    assert np.allclose(video_tensor([image])[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_sample_questions_run_through_the_cpu_runtime(samples, tmp_path) -> None:
    entries = json.loads((samples / "sample_input_video.json").read_text(encoding="utf-8"))
    present = [
        (samples / "sample_video" / Path(e["video"]).name, e["conversations"][0]["value"])
        for e in entries
        if (samples / "sample_video" / Path(e["video"]).name).exists()
    ]
    assert len({p for p, _ in present}) == 4
    out = tmp_path / "cpu"
    convert(build_checkpoint(tmp_path / "ck"), out, "f32")
    valley = load_valley(out)
    clips = {}
    for path, question in present:
        assert "<video>" in question
        clip = clips.setdefault(path, valley.clip(path))
        answer = valley.ask(clip, question, decoding=Decoding(4))
        assert answer.tokens and answer.prompt_tokens > 268
