"""The vision-language video backends on a tiny random Qwen2-VL converted by llama.cpp's converter:
in process through llama.cpp's multimodal library (``llama_cpp``), and on llama-cpp-python's own
server (``openai``). The in-process answer is checked token for token against transformers."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from greenroom.models.files import ModelFileError
from greenroom.models.llm import LLMUnavailable
from greenroom.models.video.answer import DEFAULT_QUESTION, Decoding
from greenroom.models.video.frames import Limits, VideoError
from greenroom.models.vlm.clip import FramesClip, read_clip
from greenroom.models.vlm.layout import frame_parts
from greenroom.models.vlm.llama_cpp import LlamaCppVision
from greenroom.models.vlm.openai import OpenAIVision
from tests.clips import pattern_clip
from tests.servers import free_port, llama_server
from tests.vlm_fixture import TinyVLM, hf_greedy

SIDE = 112  # 320x240 frames become 112x84: multiples of 28, so neither side resizes them


@pytest.fixture(scope="module")
def vision(tiny_vlm: TinyVLM) -> LlamaCppVision:
    return LlamaCppVision(str(tiny_vlm.model), str(tiny_vlm.mmproj), n_ctx=2048, side=SIDE, frames=4)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vlm-clips")
    return {
        "a": pattern_clip(folder / "320x240.mp4", 3, "320x240"),
        "b": pattern_clip(folder / "b-320x240.mp4", 2, "320x240", 24),
    }


def frames_of(clip: FramesClip) -> list[Image.Image]:
    return [Image.open(io.BytesIO(jpeg)).convert("RGB") for jpeg in clip.jpegs]


def test_the_answer_is_transformers_greedy_answer_on_the_same_frames(vision, clip_files, tiny_vlm) -> None:
    clip = vision.clip(clip_files["a"])
    assert len(clip.jpegs) == 4 and clip.times[0] == 0.0 and clip.times[-1] > 2.5  # times span the clip
    answer = vision.ask(clip, DEFAULT_QUESTION, [], Decoding(8))
    prefix, rest = vision.render(clip, DEFAULT_QUESTION, [])
    assert answer.tokens == hf_greedy(tiny_vlm, prefix + rest, frames_of(clip), 8)
    assert answer.text and answer.vision_s > 0 and not answer.reused


def test_a_follow_up_reuses_the_clip_and_answers_as_if_fresh(vision, clip_files, tiny_vlm) -> None:
    a, b = vision.clip(clip_files["a"]), vision.clip(clip_files["b"])
    first = vision.ask(a, DEFAULT_QUESTION, [], Decoding(8))
    turns = [(DEFAULT_QUESTION, first.text)]
    follow = vision.ask(a, "What colour is it?", turns, Decoding(8))
    assert follow.reused and follow.vision_s == 0  # the frames were not encoded again
    vision.ask(b, DEFAULT_QUESTION, [], Decoding(8))  # another clip in between: a's prefix is copied out
    again = vision.ask(a, "What colour is it?", turns, Decoding(8))
    assert again.reused and again.vision_s == 0
    fresh = LlamaCppVision(str(tiny_vlm.model), str(tiny_vlm.mmproj), n_ctx=2048, side=SIDE, frames=4, cache_mb=0)
    expected = fresh.ask(a, "What colour is it?", turns, Decoding(8))
    assert not expected.reused
    assert follow.tokens == again.tokens == expected.tokens


def test_a_photo_is_one_frame(vision, tmp_path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (224, 168), (200, 40, 40)).save(photo)
    clip = vision.clip(photo)
    assert clip.still and len(clip.jpegs) == 1
    assert "A photo:" in vision.render(clip, "What is this?", [])[0]
    assert vision.ask(clip, "What is this?", [], Decoding(4)).tokens


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\x00garbage" * 200, "could not read that as a video"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 64, "could not read"),
    ],
)
def test_bad_clips_get_the_same_messages_as_with_valley(vision, tmp_path, data, words) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(data)
    with pytest.raises(VideoError, match=words):
        vision.clip(path)


def test_missing_or_wrong_projector_is_named(tiny_vlm, tmp_path) -> None:
    with pytest.raises(ModelFileError, match="video.mmproj is empty"):
        LlamaCppVision(str(tiny_vlm.model), "")
    with pytest.raises(ModelFileError, match="not found"):
        LlamaCppVision(str(tiny_vlm.model), str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelFileError, match="projector"):
        LlamaCppVision(str(tiny_vlm.model), str(tiny_vlm.model))  # a language model is no projector


def test_a_server_that_takes_video_gets_the_clip_whole(clip_files) -> None:
    clip = read_clip(clip_files["a"], 4, Limits(), SIDE, keep_video=True)
    video = [p for p in frame_parts(clip, send_video=True) if p["type"] == "video_url"]
    assert len(video) == 1
    assert base64.b64decode(video[0]["video_url"]["url"].split(",", 1)[1]) == clip_files["a"].read_bytes()
    images = [p for p in frame_parts(clip, send_video=False) if p["type"] == "image_url"]
    assert len(images) == 4


def test_the_openai_backend_on_llama_cpp_python_s_own_server(tiny_vlm, clip_files, tmp_path) -> None:
    args = ("--clip_model_path", str(tiny_vlm.mmproj), "--chat_format", "qwen2.5-vl")
    with llama_server(tiny_vlm.model, tmp_path / "server.log", *args) as url:
        server = OpenAIVision(url, frames=4, side=SIDE, retries=0)
        server.ping()
        clip = server.clip(clip_files["a"])
        answer = server.ask(clip, DEFAULT_QUESTION, [], Decoding(8))
        assert answer.text
        assert answer.prompt_tokens > 4 * 12  # the server's own count: four frames of 12 tokens each, and words
        follow = server.ask(clip, "What colour is it?", [(DEFAULT_QUESTION, answer.text)], Decoding(8))
        assert follow.text
    down = OpenAIVision(f"http://127.0.0.1:{free_port()}/v1", frames=4, side=SIDE, retries=0)
    with pytest.raises(LLMUnavailable):
        down.ask(clip, DEFAULT_QUESTION, [], Decoding(8))


def test_the_same_frames_laid_out_differently_are_not_the_same_cached_clip(vision, clip_files) -> None:
    clip = vision.clip(clip_files["a"])
    photo = FramesClip(clip.jpegs[:1], (0.0,), 1, [0], still=True)
    one_frame = FramesClip(clip.jpegs[:1], (0.0,), 1, [0], still=False)
    later = FramesClip(clip.jpegs, tuple(t + 1 for t in clip.times), clip.total_frames, clip.indices)
    assert len({photo.key, one_frame.key, later.key, clip.key}) == 4
    first = vision.ask(photo, "What is this?", [], Decoding(4))
    assert not vision.ask(one_frame, "What is this?", [], Decoding(4)).reused  # its prompt differs: encoded anew
    assert first.tokens
