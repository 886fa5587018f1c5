"""Valley v1 frame sampling and preprocessing against independent computations, and bad clips."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from greenroom.models.video.frames import Limits, VideoError, count_frames, frame_indices, read_frames
from greenroom.models.video.transform import CLIP_MEAN, CLIP_STD, center_crop, resize_shorter, video_tensor
from tests.clips import ffmpeg, lossless_clip, numbered_frames, pattern_clip


def test_indices_are_valleys_linspace_truncated() -> None:
    assert frame_indices(330, 8) == [0, 47, 94, 141, 188, 235, 282, 329]
    assert frame_indices(480, 8) == [0, 68, 136, 205, 273, 342, 410, 479]
    assert frame_indices(360, 8) == [0, 51, 102, 153, 205, 256, 307, 359]
    assert frame_indices(3, 8) == [0, 0, 0, 0, 1, 1, 1, 2]  # short clips repeat, as in the original


def test_decoded_frames_are_exactly_the_indexed_source_frames(tmp_path) -> None:
    source = numbered_frames(37)
    frames = read_frames(lossless_clip(tmp_path / "c.mkv", source), 8)
    assert frames.total == 37
    assert frames.indices == np.linspace(0, 36, 8).astype(int).tolist()
    for index, image in zip(frames.indices, frames.images):
        assert np.array_equal(np.asarray(image), source[index])


def test_configurable_frame_count(tmp_path) -> None:
    source = numbered_frames(50)
    frames = read_frames(lossless_clip(tmp_path / "c.mkv", source), 16)
    assert len(frames.images) == 16 and frames.indices[-1] == 49
    assert np.array_equal(np.asarray(frames.images[5]), source[frames.indices[5]])


def test_short_clip_repeats_frames(tmp_path) -> None:
    source = numbered_frames(3)
    frames = read_frames(lossless_clip(tmp_path / "c.mkv", source), 8)
    assert frames.indices == [0, 0, 0, 0, 1, 1, 1, 2]
    assert [np.array_equal(np.asarray(im), source[i]) for im, i in zip(frames.images, frames.indices)] == [True] * 8


def test_variable_frame_rate_is_sampled_by_index_not_time(tmp_path) -> None:
    """Frames 0-19 a frame every 1/30 s, then one every second: by time most picks would land late."""
    source = numbered_frames(30)
    clip = lossless_clip(
        tmp_path / "vfr.mkv", source, output=("-vf", "setpts='if(lt(N,20),N/30,20/30+(N-20))/TB'", "-fps_mode", "vfr")
    )
    frames = read_frames(clip, 8)
    assert frames.total == 30 and frames.indices == frame_indices(30, 8)
    for index, image in zip(frames.indices, frames.images):
        assert np.array_equal(np.asarray(image), source[index])


def test_rotated_phone_video_comes_out_upright(tmp_path) -> None:
    upright = tmp_path / "up.mp4"
    pattern_clip(upright, 1, "96x64")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(upright), "-c", "copy", str(rotated))
    frames = read_frames(rotated, 8)
    assert frames.images[0].size == (64, 96)
    assert (frames.info.width, frames.info.height) == (64, 96)


def test_transform_matches_valleys_chain_computed_independently() -> None:
    """320x240 -> 341x256 (PIL bilinear) -> crop at x=58, y=16 -> /255 -> CLIP mean/std (docs, section 2.2)."""
    rng = np.random.default_rng(1)
    frame = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    expected = np.asarray(frame.resize((341, 256), Image.BILINEAR), dtype=np.float64)[16:240, 58:282] / 255.0
    expected = (expected - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    tensor = video_tensor([frame, frame])
    assert tensor.shape == (2, 3, 224, 224)
    assert np.allclose(tensor[1].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_resize_keeps_a_256_shorter_side_and_truncates_the_longer() -> None:
    assert resize_shorter(Image.new("RGB", (300, 256))).size == (300, 256)
    assert resize_shorter(Image.new("RGB", (240, 427))).size == (256, 455)  # int(256*427/240) = 455.46 -> 455
    assert center_crop(Image.new("RGB", (341, 256))).size == (224, 224)


# ---- bad input: each gets a specific message or a correct result ---------------------------------------


def test_zero_byte_file(tmp_path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        read_frames(tmp_path / "empty.mp4")


def test_random_bytes_named_mp4(tmp_path) -> None:
    (tmp_path / "noise.mp4").write_bytes(os.urandom(50_000))
    with pytest.raises(VideoError, match="could not read that as a video"):
        read_frames(tmp_path / "noise.mp4")


def test_truncated_file_is_refused_or_read_up_to_the_cut(tmp_path) -> None:
    whole = pattern_clip(tmp_path / "whole.mp4", 2, "160x120", 30, "-movflags", "+faststart")
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        frames = read_frames(cut)
    except VideoError as e:
        assert "could not" in str(e)
    else:
        assert 0 < frames.total <= 60 and len(frames.images) == 8


def test_audio_only_file(tmp_path) -> None:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(tmp_path / "voice.mp4"))
    with pytest.raises(VideoError, match="no picture"):
        read_frames(tmp_path / "voice.mp4")


def test_still_image_is_a_one_frame_clip(tmp_path) -> None:
    source = numbered_frames(1)
    Image.fromarray(source[0]).save(tmp_path / "photo.png")
    frames = read_frames(tmp_path / "photo.png")
    assert frames.total == 1 and frames.indices == [0] * 8 and frames.info.seconds is None
    assert np.array_equal(np.asarray(frames.images[7]), source[0])


def test_huge_resolution_is_refused_before_decoding(tmp_path) -> None:
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=blue:size=5000x64:rate=1:duration=1", "-c:v", "ffv1", str(tmp_path / "wide.mkv")
    )
    with pytest.raises(VideoError, match="5000x64"):
        read_frames(tmp_path / "wide.mkv", limits=Limits(max_side=4096))


def test_hour_long_clip_is_refused_before_decoding(tmp_path) -> None:
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=32x32:rate=1:duration=3700",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(tmp_path / "long.mp4"),
    )
    with pytest.raises(VideoError, match="1:01:40 long"):
        read_frames(tmp_path / "long.mp4", limits=Limits(max_seconds=600))


def test_oversized_file_is_refused(tmp_path) -> None:
    clip = lossless_clip(tmp_path / "c.mkv", numbered_frames(5))
    with pytest.raises(VideoError, match="limit is"):
        read_frames(clip, limits=Limits(max_bytes=1000))


def test_a_hanging_ffmpeg_is_killed(tmp_path) -> None:
    """A FIFO nobody writes to: ffmpeg waits forever on it; the run limit stops it."""
    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match="took longer than"):
        count_frames(fifo, Limits(decode_seconds=0.5))
