"""llama.cpp's multimodal library (mtmd) against transformers on the same tiny random Qwen2-VL: the
image embeddings, the prompt tokens around the images, and a greedy answer about two images."""

from __future__ import annotations

import base64
import ctypes
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from llama_cpp import Llama, llama_get_logits_ith, llama_pos
from llama_cpp import mtmd_cpp as mtmd
from llama_cpp.llama_chat_format import Qwen25VLChatHandler
from PIL import Image
from transformers import AutoConfig, AutoTokenizer, Qwen2VLForConditionalGeneration

from greenroom.models.llm.kernels import load_cpu_kernels
from tests.vlm_fixture import TinyVLM, hf_greedy, hf_inputs

MARKER = mtmd.mtmd_default_marker().decode()
SYSTEM = "You are a helpful assistant."  # Qwen25VLChatHandler's default
QUESTION = "What changed between these two pictures?"
PROMPT = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{MARKER}{MARKER}{QUESTION}<|im_end|>\n"
    "<|im_start|>assistant\n"
)  # Qwen2-VL's prompt for one user turn, the images first as Qwen25VLChatHandler puts them


@dataclass
class Mtmd:
    """The text model and mtmd's context on its projector."""

    llama: Llama
    ctx: mtmd.mtmd_context_p


def noise(width: int, height: int, seed: int) -> Image.Image:
    """Random RGB pixels. Sides that are multiples of 28 (patch 14 x merge 2), within both sides' pixel
    limits, so that neither mtmd (clip.cpp's calc_size_preserved_ratio) nor transformers' smart_resize
    resizes: both encode the very same pixels."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pictures() -> list[Image.Image]:
    return [noise(112, 84, 1), noise(56, 112, 2)]


@pytest.fixture(scope="module")
def on_mtmd(tiny_vlm: TinyVLM) -> Iterator[Mtmd]:
    load_cpu_kernels()
    llama = Llama(str(tiny_vlm.model), n_ctx=512, n_batch=512, n_threads=2, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.print_timings, params.warmup = False, 2, False, False
    ctx = mtmd.mtmd_init_from_file(str(tiny_vlm.mmproj).encode(), llama.model, params)
    assert ctx is not None, f"mtmd could not load {tiny_vlm.mmproj}"
    yield Mtmd(llama, ctx)
    mtmd.mtmd_free(ctx)
    llama.close()


@contextmanager
def tokenized(
    ctx: mtmd.mtmd_context_p, text: str, images: list[Image.Image]
) -> Iterator[list[mtmd.mtmd_input_chunk_p]]:
    """mtmd's chunks of ``text`` with one bitmap per media marker (RGB bytes, as a decoded file gives)."""
    bitmaps = []
    for image in images:
        raw = image.convert("RGB").tobytes()
        bitmaps.append(
            mtmd.mtmd_bitmap_init(image.width, image.height, (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw))
        )
    chunks = mtmd.mtmd_input_chunks_init()
    encoded = text.encode()
    given = mtmd.mtmd_input_text(text=encoded, text_len=len(encoded), add_special=True, parse_special=True)
    try:
        array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        assert mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(given), array, len(bitmaps)) == 0
        yield [mtmd.mtmd_input_chunks_get(chunks, i) for i in range(mtmd.mtmd_input_chunks_size(chunks))]
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        for bitmap in bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)


def is_image(chunk: mtmd.mtmd_input_chunk_p) -> bool:
    return mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE


def token_ids(chunks: list[mtmd.mtmd_input_chunk_p], image_pad: int) -> list[int]:
    """The prompt as token ids, each image token written as ``image_pad`` (transformers' placeholder)."""
    ids: list[int] = []
    for chunk in chunks:
        if is_image(chunk):
            ids += [image_pad] * mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        else:
            n = ctypes.c_size_t()
            text = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
            ids += text[: n.value]
    return ids


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_image_embeddings_match_transformers(tiny_vlm: TinyVLM, on_mtmd: Mtmd) -> None:
    image = noise(112, 84, 1)
    with tokenized(on_mtmd.ctx, f"Look: {MARKER}", [image]) as chunks:
        (chunk,) = [c for c in chunks if is_image(c)]
        n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        assert mtmd.mtmd_encode_chunk(on_mtmd.ctx, chunk) == 0
        width = on_mtmd.llama.n_embd()
        ours = np.ctypeslib.as_array(mtmd.mtmd_get_output_embd(on_mtmd.ctx), shape=(n_tokens * width,))
        ours = ours.reshape(n_tokens, width).copy()
    inputs = hf_inputs(tiny_vlm, MARKER, [image])
    assert inputs["image_grid_thw"].tolist() == [[1, 84 // 14, 112 // 14]]  # transformers did not resize
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_vlm.hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output.numpy()
    assert ours.shape == theirs.shape == (12, width)  # (112 / 28) x (84 / 28) merged patches
    worst = float(cosines(ours, theirs).min())
    assert worst >= 0.999, f"lowest row cosine {worst:.7f}"


def test_prompt_tokens_match_transformers(tiny_vlm: TinyVLM, on_mtmd: Mtmd) -> None:
    """mtmd wraps each Qwen2-VL image in <|vision_start|> ... <|vision_end|> (mtmd.cpp), as the
    reference prompt does: both sides read the same ids, image tokens included."""
    expected = hf_inputs(tiny_vlm, PROMPT, pictures())["input_ids"][0].tolist()
    image_pad = AutoConfig.from_pretrained(tiny_vlm.hf_dir).image_token_id
    with tokenized(on_mtmd.ctx, PROMPT, pictures()) as chunks:
        assert token_ids(chunks, image_pad) == expected
        assert [mtmd.mtmd_input_chunk_get_n_tokens(c) for c in chunks if is_image(c)] == [12, 8]


def test_greedy_answer_matches_transformers(tiny_vlm: TinyVLM, on_mtmd: Mtmd) -> None:
    """mtmd's own evaluation (M-RoPE positions), then greedy on llama.cpp's logits, its default f16 KV
    cache included: they differ from transformers' by at most 0.006 here, the top-2 margins are 0.18+."""
    llama = on_mtmd.llama
    expected = hf_greedy(tiny_vlm, PROMPT, pictures(), 8)
    assert len(expected) == 8
    with tokenized(on_mtmd.ctx, PROMPT, pictures()) as chunks:
        n_past = llama_pos(0)
        for chunk in chunks:
            at = n_past.value
            done = mtmd.mtmd_helper_eval_chunk_single(
                on_mtmd.ctx, llama.ctx, chunk, at, 0, llama.n_batch, True, ctypes.byref(n_past)
            )
            assert done == 0
    llama.n_tokens = n_past.value  # positions used: an image takes max(rows, columns) under M-RoPE
    answer = []
    for _ in range(8):
        logits = np.ctypeslib.as_array(llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),))
        answer.append(int(logits.argmax()))
        llama.eval(answer[-1:])
    assert answer == expected


def test_chat_handler_answer_matches_transformers(tiny_vlm: TinyVLM) -> None:
    """The same through llama-cpp-python's Qwen25VLChatHandler, with the images as data URIs."""
    load_cpu_kernels()
    handler = Qwen25VLChatHandler(clip_model_path=str(tiny_vlm.mmproj), verbose=False)
    llama = Llama(str(tiny_vlm.model), n_ctx=512, n_threads=2, chat_handler=handler, verbose=False)
    urls = []
    for image in pictures():
        png = io.BytesIO()
        image.save(png, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(png.getvalue()).decode())
    content = [*({"type": "image_url", "image_url": {"url": u}} for u in urls), {"type": "text", "text": QUESTION}]
    reply = llama.create_chat_completion(
        [{"role": "user", "content": content}], temperature=0.0, repeat_penalty=1.0, max_tokens=8
    )
    llama.close()
    # The handler's prompt ends "<|im_start|>assistant" without the line break (Jinja drops its
    # template's trailing newline): the official template's prompt is one token longer.
    rendered = PROMPT.removesuffix("\n")
    expected = AutoTokenizer.from_pretrained(tiny_vlm.hf_dir).decode(hf_greedy(tiny_vlm, rendered, pictures(), 8))
    assert reply["choices"][0]["message"]["content"] == expected
