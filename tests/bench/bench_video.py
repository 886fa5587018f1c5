"""Video: Valley's frame sampling, and the vision side at full ViT-L/14 size (random weights).

Frame sampling: ``read_frames`` (count, then decode only the 8 chosen frames) against decoding
every frame to RGB and picking 8 by index, on synthetic H.264 clips made with ffmpeg.
Vision: the built path (CLIP cut to 23 layers, bf16 where the CPU has bf16 matrix units, pool
in CLIP space, project 264 rows) against the naive one (24-layer fp32 tower, hidden_states[-2],
project all 2056 tokens, then pool), with the row cosine between their visual rows.
Backends: a describe and a follow-up question per video backend (tiny random models), with where the
time went, against llama-cpp-python's own chat handler, which encodes every frame for every question.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Qwen25VLChatHandler
from transformers import CLIPVisionConfig, CLIPVisionModel

from greenroom.models.llm.kernels import load_cpu_kernels
from greenroom.models.valley.convert import convert
from greenroom.models.valley.model import Valley, load_valley, vision_dtype_for
from greenroom.models.valley.vision import VisualEncoder, build_tower, project_then_pool
from greenroom.models.video.answer import DEFAULT_QUESTION, Decoding
from greenroom.models.video.frames import Limits, frame_indices, read_frames
from greenroom.models.vlm.clip import FramesClip, read_clip
from greenroom.models.vlm.layout import frame_parts, messages
from greenroom.models.vlm.llama_cpp import LlamaCppVision
from greenroom.models.vlm.openai import OpenAIVision
from tests.bench.common import median, table, timed
from tests.clips import decode_every_frame, pattern_clip
from tests.servers import llama_server
from tests.valley_fixture import build_checkpoint
from tests.vlm_fixture import build_tiny_vlm

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


SIDE = 224  # frame side for the Qwen2-VL backends (Valley's transform takes 224 px itself)
DECODING = Decoding(max_new_tokens=16)  # greedy
FOLLOW_UP = "What colours are in it?"
LABELS = {
    "valley": "valley (tiny Valley, another model)",
    "llama_cpp": "llama_cpp",
    "openai": "openai (llama-cpp-python server)",
    "baseline": "baseline: chat handler in process",
}


@dataclass(frozen=True)
class Run:
    """One describe and one follow-up of the clip (ms). ``first`` is the first question after the frames
    (vision + language); ``vision`` is None where it is not measured apart (a server, the chat handler)."""

    frames: float
    vision: float | None
    first: float
    follow: float
    tokens: str = "-"  # new tokens, first/follow-up, where the backend counts them
    reused: bool = False  # the follow-up reused the clip's encoded prefix


def ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def valley_run(valley: Valley, path: Path) -> Run:
    """Valley: ``clip`` (frames + vision tower) then ``ask``; frames timed apart with ``read_frames``."""
    start = time.perf_counter()
    read_frames(path, valley.frames, valley.limits)
    frames = ms(start)
    start = time.perf_counter()
    clip = valley.clip(path)
    encoded = ms(start)
    start = time.perf_counter()
    first = valley.ask(clip, DEFAULT_QUESTION, [], DECODING)
    asked = ms(start)
    start = time.perf_counter()
    follow = valley.ask(clip, FOLLOW_UP, [(DEFAULT_QUESTION, first.text)], DECODING)
    follow_ms = ms(start)
    tokens = f"{len(first.tokens)}/{len(follow.tokens)}"
    return Run(frames, encoded - frames, encoded - frames + asked, follow_ms, tokens, follow.reused)


def vlm_run(backend: LlamaCppVision | OpenAIVision, path: Path) -> Run:
    """A Qwen2-VL backend: ``clip`` (frames), the first question (vision + language), the follow-up."""
    clip = backend.clip(path)
    start = time.perf_counter()
    first = backend.ask(clip, DEFAULT_QUESTION, [], DECODING)
    first_ms = ms(start)
    start = time.perf_counter()
    follow = backend.ask(clip, FOLLOW_UP, [(DEFAULT_QUESTION, first.text)], DECODING)
    follow_ms = ms(start)
    local = isinstance(backend, LlamaCppVision)
    tokens = f"{len(first.tokens)}/{len(follow.tokens)}" if local else "-"
    return Run(
        clip.frames_s * 1000, first.vision_s * 1000 if local else None, first_ms, follow_ms, tokens, follow.reused
    )


def handler_run(llama: Llama, clip: FramesClip) -> Run:
    """The baseline: llama-cpp-python's chat handler, the same messages the server gets (frames as
    ``image_url`` data URIs), every frame encoded again for each question."""

    def complete(question: str, turns: list[tuple[str, str]]) -> tuple[str, int, float]:
        start = time.perf_counter()
        reply = llama.create_chat_completion(
            messages(frame_parts(clip, False), question, turns),
            temperature=0.0,
            repeat_penalty=1.0,
            max_tokens=DECODING.max_new_tokens,
        )
        return reply["choices"][0]["message"]["content"] or "", reply["usage"]["completion_tokens"], ms(start)  # type: ignore[index]

    text, first_tokens, first = complete(DEFAULT_QUESTION, [])
    _, follow_tokens, follow = complete(FOLLOW_UP, [(DEFAULT_QUESTION, text.strip())])
    return Run(clip.frames_s * 1000, None, first, follow, f"{first_tokens}/{follow_tokens}")


def evicted_run(backend: LlamaCppVision, path: Path, other: FramesClip) -> Run:
    """``vlm_run`` after a question about ``other`` (one token, untimed) has put that clip's prefix in the
    cache in place of this one's (the backend saves none: ``cache_mb=0``), so the first question encodes."""
    backend.ask(other, decoding=Decoding(max_new_tokens=1))
    return vlm_run(backend, path)


def rounds(runners: dict[str, Callable[[], Run]], repeat: int = 3) -> dict[str, list[Run]]:
    """``repeat`` rounds after one unmeasured, each backend once a round (interleaved, so load from
    elsewhere on the machine falls on all of them alike)."""
    out: dict[str, list[Run]] = {name: [] for name in runners}
    for measured in [False] + [True] * repeat:
        for name, run in runners.items():
            done = run()
            if measured:
                out[name].append(done)
    return out


@contextmanager
def tiny_vlm_runners(path: Path, folder: Path) -> Iterator[dict[str, Callable[[], Run]]]:
    """The llama_cpp backend (the clip's prefix evicted before each run), the openai backend on
    llama-cpp-python's server and the chat handler baseline, on the tiny Qwen2-VL; none where it cannot
    be built."""
    try:
        tiny = build_tiny_vlm()
    except pytest.skip.Exception as e:
        print(f"\nVideo backends: no tiny Qwen2-VL ({e.msg}); llama_cpp, openai and the baseline left out")
        yield {}
        return
    load_cpu_kernels()
    local = LlamaCppVision(str(tiny.model), str(tiny.mmproj), n_ctx=4096, side=SIDE, cache_mb=0)
    other = local.clip(pattern_clip(folder / "other.mp4", 4, "320x240"))
    args = ("--clip_model_path", str(tiny.mmproj), "--chat_format", "qwen2.5-vl")
    handler = Qwen25VLChatHandler(clip_model_path=str(tiny.mmproj), verbose=False)
    llama = Llama(model_path=str(tiny.model), chat_handler=handler, n_ctx=4096, verbose=False)
    try:
        with llama_server(tiny.model, folder / "server.log", *args) as url:
            server = OpenAIVision(url, frames=8, side=SIDE, retries=0)
            yield {
                "llama_cpp": lambda: evicted_run(local, path, other),
                "openai": lambda: vlm_run(server, path),
                "baseline": lambda: handler_run(llama, read_clip(path, 8, Limits(), SIDE)),
            }
    finally:
        llama.close()


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def backends() -> None:
    """Each video backend on a 10 s clip: describe time and its split, a follow-up against the first
    question, the Qwen2-VL backends against llama-cpp-python's chat handler."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = pattern_clip(folder / "clip.mp4", 10, "320x240")
        convert(build_checkpoint(folder / "valley"), folder / "valley-cpu", "f32")
        valley = load_valley(folder / "valley-cpu")
        with tiny_vlm_runners(path, folder) as runners:
            results = rounds({"valley": lambda: valley_run(valley, path), **runners})
    base = results.get("baseline")

    def vs(done: list[Run], measure: Callable[[Run], float]) -> float | str:
        """Median over the rounds of the run's figure over the baseline's in the same round."""
        return median([measure(r) / measure(b) for r, b in zip(done, base, strict=True)]) if base else "-"

    describe_rows: list[list[object]] = []
    follow_rows: list[list[object]] = []
    for name, done in results.items():
        frames, first, follow = (median([getattr(r, k) for r in done]) for k in ("frames", "first", "follow"))
        whole = frames + first
        if done[0].vision is not None:
            vision = median([r.vision or 0.0 for r in done])
            split = [share(vision, whole), share(first - vision, whole), "-"]
        else:
            split = ["-", "-", share(first, whole)]
        describe_rows.append(
            [LABELS[name], whole, share(frames, whole), *split, vs(done, lambda r: r.frames + r.first)]
        )
        follow_rows.append(
            [
                LABELS[name],
                first,
                follow,
                median([r.follow / r.first for r in done]),
                vs(done, lambda r: r.first),
                vs(done, lambda r: r.follow),
                done[0].tokens,
                "yes" if all(r.reused for r in done) else "no",
            ]
        )
    title = f"8 frames of a 10 s 320x240 clip, {SIDE} px for Qwen2-VL, greedy {DECODING.max_new_tokens} new tokens"
    table(
        f"Video backends, describe a clip ({title}; tiny random models; median of 3, ratios per round)",
        ["backend", "describe ms", "frames", "vision", "language", "server / handler", "vs baseline"],
        describe_rows,
    )
    table(
        "Video backends, a follow-up (the first Q/A as a turn) against the first question, after the frames"
        " (median of 3, ratios per round)",
        [
            "backend",
            "first ms",
            "follow-up ms",
            "follow-up/first",
            "first vs baseline",
            "follow-up vs baseline",
            "new tokens",
            "reused",
        ],
        follow_rows,
    )


def main() -> None:
    sampling()
    vision()
    backends()


if __name__ == "__main__":
    main()
