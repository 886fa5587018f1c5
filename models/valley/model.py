"""Valley behind one interface, on either runtime: ``load_valley`` and :class:`Valley`."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from greenroom.models.valley.checkpoint import (
    PROJECTOR_PREFIX,
    VISION_PREFIX,
    Shards,
    default_template,
    load_tokenizer,
    read_config,
)
from greenroom.models.valley.errors import RUNTIMES, CheckpointError
from greenroom.models.valley.generate import LanguageRuntime, generate
from greenroom.models.valley.prompt import TEMPLATES, TokenIds, encode, render, visual_runs
from greenroom.models.valley.vision import (
    VisualEncoder,
    build_tower,
    declared_tower,
    layers_used,
    projector_of,
    stored_layers,
)
from greenroom.models.video.answer import DEFAULT_QUESTION, Answer, Decoding
from greenroom.models.video.frames import Limits, read_frames
from greenroom.models.video.transform import video_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """A clip's visual rows ((256 + T) x H, float32), computed once and reused for follow-up questions."""

    rows: np.ndarray
    total_frames: int
    indices: list[int]


class Valley:
    """Frames -> visual rows -> an answer, for one checkpoint on one runtime. Not thread-safe by itself:
    calls are serialised with a lock (one generation at a time per model)."""

    def __init__(
        self,
        encoder: VisualEncoder,
        language: LanguageRuntime,
        tokenizer,
        template: str,
        frames: int = 8,
        limits: Limits = Limits(),
        runtime: str = "",
    ) -> None:
        if template not in TEMPLATES:
            raise CheckpointError(f"unknown Valley template '{template}' (choose {' or '.join(TEMPLATES)})")
        self.encoder = encoder
        self.language = language
        self.tokenizer = tokenizer
        self.template = template
        self.frames = frames
        self.limits = limits
        self.runtime = runtime
        self.ids = TokenIds.of(tokenizer, tokenizer.unk_token_id)
        self._lock = threading.Lock()

    def clip(self, path: str | Path) -> Clip:
        """Decode, transform and encode a clip (raises VideoError for bad input)."""
        frames = read_frames(path, self.frames, self.limits)
        with self._lock:
            rows = self.encoder(video_tensor(frames.images)).numpy()
        return Clip(rows, frames.total, frames.indices)

    def ask(
        self,
        clip: Clip,
        question: str = DEFAULT_QUESTION,
        turns: list[tuple[str, str]] | None = None,
        decoding: Decoding = Decoding(),
    ) -> Answer:
        """Answer a question about a clip after earlier (question, answer) turns; the oldest turns are
        dropped when the conversation no longer fits the context."""
        turns = list(turns or [])
        t = len(clip.rows) - 256
        while True:
            ids = encode(self.tokenizer, render(self.template, turns, question, t))
            if len(ids) + min(decoding.max_new_tokens, 64) <= self.language.n_ctx or not turns:
                break
            turns = turns[1:]
        runs = visual_runs(ids, self.ids, t)
        with self._lock:
            return generate(
                self.language,
                ids,
                clip.rows,
                runs,
                lambda tokens: self.tokenizer.decode(tokens, skip_special_tokens=True),
                decoding,
            )


def vision_dtype_for(name: str, device: str) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.float16
    # bf16 runs on the CPU's matrix units where it has them (4-7x fp32 there), and is slow where it has not
    return (
        torch.bfloat16
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        else torch.float32
    )


def load_valley(
    path: str | Path,
    runtime: str = "auto",
    *,
    frames: int = 8,
    template: str = "auto",
    vision_dtype: str = "auto",
    limits: Limits = Limits(),
    n_threads: int = 0,
    device: str = "cuda",
    kernels: str = "auto",
) -> Valley:
    """A converted folder (``greenroom valley convert``) runs on the CPU runtime; a checkpoint as
    published runs on the GPU runtime (``device``; tests use ``cpu``)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"Valley checkpoint folder not found: {folder}")
    converted = (folder / "valley.json").is_file()
    if runtime == "auto":
        runtime = "cpu" if converted else "gpu"
    if runtime == "cpu":
        if not converted:
            raise CheckpointError(
                f"{folder} is a checkpoint as published; the CPU runtime needs it converted "
                f"first: greenroom valley convert {folder} OUT"
            )
        return _load_cpu(folder, frames, template, vision_dtype, limits, n_threads, kernels)
    if runtime != "gpu":
        raise CheckpointError(f"unknown runtime '{runtime}' (choose {', '.join(RUNTIMES)})")
    if converted:
        raise CheckpointError(
            f"{folder} is converted for the CPU runtime; the GPU runtime loads the checkpoint as published"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(
            "no CUDA GPU here: convert the checkpoint (greenroom valley convert) and use the CPU runtime"
        )
    return _load_gpu(folder, frames, template, vision_dtype, limits, device)


def _load_cpu(
    folder: Path, frames: int, template: str, vision_dtype: str, limits: Limits, n_threads: int, kernels: str
) -> Valley:
    from greenroom.models.valley.runtime_llama import LlamaCppLanguage

    meta = json.loads((folder / "valley.json").read_text())
    vision = load_file(str(folder / "vision.safetensors"))
    declared = (meta["vision"], str(folder / "valley.json")) if "vision" in meta else None  # older folders: none
    tower = build_tower(vision, stored_layers(list(vision)), vision_dtype_for(vision_dtype, "cpu"), declared)
    encoder = VisualEncoder(tower, projector_of(load_file(str(folder / "projector.safetensors"))))
    language = LlamaCppLanguage(
        folder / "language.gguf", n_ctx=meta.get("n_ctx", 2048), n_threads=n_threads, kernels=kernels
    )
    template = meta["template"] if template == "auto" else template
    return Valley(encoder, language, load_tokenizer(folder), template, frames, limits, "cpu")


def _load_gpu(folder: Path, frames: int, template: str, vision_dtype: str, limits: Limits, device: str) -> Valley:
    from greenroom.models.valley.runtime_torch import TorchLanguage, load_language

    config = read_config(folder)
    shards = Shards(folder)
    vision = shards.group(VISION_PREFIX)
    used = layers_used(stored_layers(list(vision)), config.get("mm_vision_select_layer", -2))
    tower = build_tower(vision, used, vision_dtype_for(vision_dtype, device), declared_tower(config, folder))
    encoder = VisualEncoder(tower, projector_of(shards.group(PROJECTOR_PREFIX)), device)
    dtype = torch.float32 if device == "cpu" else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    language = TorchLanguage(load_language(shards, config, device, dtype))
    template = default_template(config) if template == "auto" else template
    return Valley(encoder, language, load_tokenizer(folder), template, frames, limits, "gpu")  # type: ignore[arg-type]
