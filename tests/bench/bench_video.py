"""Video: Valley's frame sampling, and the vision side at full ViT-L/14 size (random weights).

Frame sampling: ``read_frames`` (count, then decode only the 8 chosen frames) against decoding
every frame to RGB and picking 8 by index, on synthetic H.264 clips made with ffmpeg.
Vision: the built path (CLIP cut to 23 layers, bf16 where the CPU has bf16 matrix units, pool
in CLIP space, project 264 rows) against the naive one (24-layer fp32 tower, hidden_states[-2],
project all 2056 tokens, then pool), with the row cosine between their visual rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from greenroom.models.valley.model import vision_dtype_for
from greenroom.models.valley.vision import VisualEncoder, build_tower, project_then_pool
from greenroom.models.video.frames import frame_indices, read_frames
from tests.bench.common import median, table, timed
from tests.clips import decode_every_frame, pattern_clip

VIT_L = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)
HIDDEN = 4096  # Valley2-7b's language model width


def decode_all_pick(path: Path, count: int = 8) -> list[np.ndarray]:
    """The naive sampler: every frame through a pipe as RGB, keep ``count`` by index."""
    w, h = (int(x) for x in path.stem.split("x"))
    every = decode_every_frame(path, w, h)
    return [every[i] for i in frame_indices(len(every), count)]


def sampling() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, seconds in (("320x240", 11), ("640x360", 10), ("1280x720", 10)):
            clip = pattern_clip(Path(tmp) / f"{size}.mp4", seconds, size)
            built = timed(lambda: read_frames(clip), 5, 1)
            naive = timed(lambda: decode_all_pick(clip), 5, 1)
            same = all(
                np.array_equal(np.asarray(a), b) for a, b in zip(read_frames(clip).images, decode_all_pick(clip))
            )
            rows.append(
                [
                    f"{size}, {seconds} s, 30 fps",
                    median(built),
                    median(naive),
                    median(naive) / median(built),
                    "yes" if same else "NO",
                ]
            )
    table(
        "Frame sampling per clip (8 frames, median of 5)",
        ["clip", "read_frames ms", "decode all + pick ms", "ratio", "same frames"],
        rows,
    )


def vision() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    full = CLIPVisionModel(CLIPVisionConfig(**VIT_L)).eval()
    weights = {k.removeprefix("vision_model."): v for k, v in full.state_dict().items() if "position_ids" not in k}
    projector = torch.nn.Linear(1024, HIDDEN).eval()
    dtype = vision_dtype_for("auto", "cpu")
    encoder = VisualEncoder(build_tower(weights, 23, dtype), projector)
    pixels = torch.randn(8, 3, 224, 224)

    def naive() -> torch.Tensor:
        with torch.inference_mode():
            hidden = full(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
            return project_then_pool(hidden, projector)

    built_ms = timed(lambda: encoder(pixels), 3, 1)
    naive_ms = timed(naive, 3, 1)
    a, b = encoder(pixels), naive()
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    table(
        f"Vision side at ViT-L/14 size, 8 frames, 2 threads, projector to {HIDDEN} (median of 3)",
        ["path", "ms", "ratio", "min row cosine to fp32 naive"],
        [
            [
                f"built: 23 layers {str(dtype).removeprefix('torch.')}, pool then project 264",
                median(built_ms),
                median(naive_ms) / median(built_ms),
                float(cosine.min()),
            ],
            ["naive: 24 layers fp32, project 2056 then pool", median(naive_ms), 1.0, 1.0],
        ],
    )


def main() -> None:
    sampling()
    vision()


if __name__ == "__main__":
    main()
