"""A clip as vision-language models take it: a few sampled frames as JPEG, each with its time."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from greenroom.models.video.frames import Limits, VideoError, read_frames

JPEG_QUALITY = 90
MAX_VIDEO_BYTES = 50_000_000  # a clip kept whole for servers that take video (video.send = "video")


@dataclass(frozen=True)
class FramesClip:
    """Sampled frames (JPEG) and their times in seconds; ``video`` is the file itself when a server
    takes video. ``still`` is a photo (one frame, no time)."""

    jpegs: tuple[bytes, ...]
    times: tuple[float, ...]
    total_frames: int
    indices: list[int]
    still: bool = False
    video: bytes = b""
    mime: str = "video/mp4"
    frames_s: float = 0.0  # time spent decoding the frames
    key: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(repr((self.times, self.still)).encode())  # the prompt's words about the frames
        for jpeg in self.jpegs:
            digest.update(hashlib.sha256(jpeg).digest())
        object.__setattr__(self, "key", digest.hexdigest()[:32])


def read_clip(path: str | Path, count: int, limits: Limits, side: int, keep_video: bool = False) -> FramesClip:
    """Decode ``count`` frames (a photo gives one), scaled to at most ``side`` pixels on a side."""
    start = time.perf_counter()
    path = Path(path)
    frames = read_frames(path, count, limits)
    still = frames.info.seconds is None
    images, indices = (frames.images[:1], [0]) if still else (frames.images, frames.indices)
    jpegs = tuple(_jpeg(image, side) for image in images)
    per_frame = (frames.info.seconds or 0.0) / max(frames.total, 1)
    times = tuple(round(i * per_frame, 2) for i in indices)
    video = b""
    if keep_video and not still:
        if path.stat().st_size > MAX_VIDEO_BYTES:
            raise VideoError(
                f"That clip is too large to pass on whole (the limit is {MAX_VIDEO_BYTES // 1_000_000} MB)."
            )
        video = path.read_bytes()
    mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
    return FramesClip(jpegs, times, frames.total, indices, still, video, mime, time.perf_counter() - start)


def _jpeg(image: Image.Image, side: int) -> bytes:
    image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
