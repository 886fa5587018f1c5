"""Decode exactly the frames Valley v1 takes: ``linspace(0, N-1, T)`` truncated, by frame index.

Two ffmpeg runs: one counts the frames, one decodes only the chosen ones (a ``select``
filter on the decoded frame number) and hands them over as PPM images. Every run has a
time limit and is killed when it passes it. ffmpeg applies the rotation a phone stored in
the file, so rotated clips come out upright (decord, which Valley used, does not).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import ffmpeg
import numpy as np
from PIL import Image

from greenroom.errors import UserError


class VideoError(UserError):
    """A clip that cannot be described, worded for the person who sent it."""


@dataclass(frozen=True)
class Limits:
    """What a clip may be: bytes, length, size and the time ffmpeg gets per run."""

    max_bytes: int = 200_000_000
    max_seconds: float = 600.0
    max_side: int = 4096
    decode_seconds: float = 60.0


@dataclass(frozen=True)
class ClipInfo:
    """What the container says about the first video stream."""

    codec: str
    width: int
    height: int
    seconds: float | None  # None for a still image


@dataclass(frozen=True)
class Frames:
    """The sampled frames: the clip's frame count, the chosen indices and one image per index."""

    total: int
    indices: list[int]
    images: list[Image.Image]
    info: ClipInfo


@cache
def ffmpeg_exe() -> str:
    """The system ffmpeg, else the binary shipped by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError(
            "video needs ffmpeg: install it (apt-get install ffmpeg) or `pip install imageio-ffmpeg`"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def frame_indices(total: int, count: int) -> list[int]:
    """Valley v1's choice: ``np.linspace(0, total-1, count).astype(int)`` (repeats for short clips)."""
    return np.linspace(0, total - 1, count).astype(int).tolist()


def _run(args: list[str], limit: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([ffmpeg_exe(), *args], capture_output=True, timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child before raising
        raise VideoError(f"{what} took longer than {limit:.0f} s, so I stopped.") from None


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+\S*: Video: (\w+)(.*)")
_SIZE = re.compile(r"\b(\d{1,5})x(\d{1,5})\b")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_IMAGE_CODECS = {"png", "mjpeg", "bmp", "webp", "tiff", "gif", "jpegls", "jpeg2000"}


def probe(path: Path, limits: Limits) -> ClipInfo:
    """Read the container header (no decoding) and check it against the limits."""
    size = path.stat().st_size
    if size == 0:
        raise VideoError("That file is empty.")
    if size > limits.max_bytes:
        raise VideoError(f"That file is {size / 1e6:.0f} MB; the limit is {limits.max_bytes / 1e6:.0f} MB.")
    log = _run(["-hide_banner", "-nostdin", "-i", str(path)], limits.decode_seconds, "Reading the file").stderr
    text = log.decode("utf-8", "replace")
    stream = _VIDEO.search(text)
    if stream is None:
        if "Audio:" in text:
            raise VideoError("That file has sound but no picture, so there is nothing for me to watch.")
        raise VideoError("I could not read that as a video (the file is damaged or not a video format).")
    codec, rest = stream.group(1), stream.group(2)
    dims = _SIZE.search(rest)
    if dims is None:
        raise VideoError("I could not read that as a video (the picture size is missing).")
    width, height = int(dims.group(1)), int(dims.group(2))
    rotation = _ROTATION.search(text[stream.end() :])
    if rotation and round(float(rotation.group(1))) % 180:
        width, height = height, width
    if max(width, height) > limits.max_side:
        raise VideoError(f"That video is {width}x{height}; I take at most {limits.max_side} pixels on a side.")
    duration = _DURATION.search(text)
    seconds = (
        int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)) if duration else None
    )
    if codec in _IMAGE_CODECS and (seconds is None or seconds <= 0.05):
        seconds = None
    if seconds is not None and seconds > limits.max_seconds:
        raise VideoError(f"That clip is {_clock(seconds)} long; I watch clips of up to {_clock(limits.max_seconds)}.")
    return ClipInfo(codec, width, height, seconds)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


_PROGRESS_FRAME = re.compile(rb"^frame=(\d+)$", re.M)
_PPM_FIELD = re.compile(rb"\s*(\S+)")


def count_frames(path: Path, limits: Limits, decode: bool = False) -> int:
    """Frames in the first video stream: packets by default (no decoding), or decoded frames."""
    codec = ["-map", "0:v:0", "-fps_mode", "passthrough"] + ([] if decode else ["-c", "copy"])
    done = _run(
        ["-nostdin", "-v", "error", "-i", str(path), *codec, "-f", "null", "-", "-progress", "pipe:1"],
        limits.decode_seconds,
        "Counting the frames",
    )
    counts = _PROGRESS_FRAME.findall(done.stdout)
    total = int(counts[-1]) if counts else 0
    if total == 0:
        raise VideoError("I could not find a single readable frame in that video.")
    return total


def _select(path: Path, wanted: list[int]) -> list[str]:
    expr = "+".join(f"eq(n,{i})" for i in wanted)
    stream = ffmpeg.input(str(path)).video.filter("select", expr)
    out = ffmpeg.output(
        stream, "pipe:", format="image2pipe", vcodec="ppm", fps_mode="passthrough", **{"frames:v": len(wanted)}
    )
    return out.global_args("-nostdin", "-v", "error").compile()[1:]  # _run puts the executable in front


def split_ppm(data: bytes) -> list[Image.Image]:
    """Cut a stream of binary PPM (P6) images into RGB images."""
    images, at = [], 0
    while at < len(data):
        fields: list[bytes] = []
        end = at
        while len(fields) < 4:  # magic, width, height, maxval, separated by single whitespace
            m = _PPM_FIELD.match(data, end)
            if m is None:
                raise VideoError("ffmpeg returned a damaged frame.")
            fields.append(m.group(1))
            end = m.end()
        width, height = int(fields[1]), int(fields[2])
        start = end + 1
        images.append(Image.frombytes("RGB", (width, height), data[start : start + width * height * 3]))
        at = start + width * height * 3
    return images


def read_frames(path: str | Path, count: int = 8, limits: Limits = Limits()) -> Frames:
    """Probe, count and decode the ``count`` frames Valley v1 samples from a clip."""
    path = Path(path)
    info = probe(path, limits)
    for decode in (False, True):  # packets usually equal frames; when they do not, count by decoding
        total = count_frames(path, limits, decode)
        indices = frame_indices(total, count)
        wanted = sorted(set(indices))
        done = _run(_select(path, wanted), limits.decode_seconds, "Decoding the frames")
        images = split_ppm(done.stdout)
        if len(images) == len(wanted):
            by_index = dict(zip(wanted, images, strict=True))
            return Frames(total, indices, [by_index[i] for i in indices], info)
    raise VideoError("I could not decode the frames of that video (it may be truncated or damaged).")
