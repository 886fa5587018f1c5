"""Synthetic clips made with ffmpeg for the video tests (the project's own data, no licence strings)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from greenroom.models.video.frames import ffmpeg_exe


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *args], input=stdin, check=True)


def numbered_frames(count: int, width: int = 96, height: int = 72, seed: int = 0) -> np.ndarray:
    """Frames that differ from each other everywhere (random noise), so a wrong index cannot pass."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def lossless_clip(path: Path, frames: np.ndarray, fps: str = "30", output: tuple[str, ...] = ()) -> Path:
    """Encode RGB frames losslessly (FFV1 in Matroska), so decoded frames equal the source exactly."""
    n, h, w, _ = frames.shape
    ffmpeg(
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        fps,
        "-i",
        "pipe:0",
        "-c:v",
        "ffv1",
        "-pix_fmt",
        "bgr0",
        *output,
        str(path),
        stdin=frames.tobytes(),
    )
    return path


def pattern_clip(path: Path, seconds: float, size: str = "320x240", rate: int = 30, *args: str) -> Path:
    """An H.264 test-pattern clip with sound, like a phone upload."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:duration={seconds}",
        "-shortest",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        *args,
        str(path),
    )
    return path


def decode_every_frame(path: Path, width: int, height: int) -> np.ndarray:
    """Every frame of the first video stream as RGB, in decoding order (the naive way to pick frames)."""
    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
