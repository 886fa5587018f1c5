"""The Valley v1 video transform (``valley/data/video_transform.py``), exactly.

Shorter side to 256 with PIL bilinear (the class says nearest, but its PIL branch swaps the
names), centre crop 224 with Python's rounding of the offsets, /255, CLIP mean and std.
This is not ``CLIPImageProcessor`` (224 bicubic), which Valley used only for still images.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shorter(image: Image.Image, size: int = 256) -> Image.Image:
    """Shorter side to ``size``, the longer one ``int(size * long / short)``; left alone if already there."""
    w, h = image.size
    if min(w, h) == size:
        return image
    new = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
    return image.resize(new, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int = 224) -> Image.Image:
    w, h = image.size
    x, y = round((w - size) / 2), round((h - size) / 2)
    return image.crop((x, y, x + size, y + size))


def video_tensor(images: list[Image.Image], resize: int = 256, crop: int = 224) -> torch.Tensor:
    """Frames -> a float32 tensor T x 3 x crop x crop, normalised with CLIP's mean and std."""
    arrays = [
        np.asarray(center_crop(resize_shorter(im.convert("RGB"), resize), crop), dtype=np.float32) for im in images
    ]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std
