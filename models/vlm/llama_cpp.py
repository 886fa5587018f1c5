"""A GGUF vision-language model and its projector (``mmproj``) in process, through llama.cpp's
multimodal library (``mtmd``).

The prompt is the model's own chat template: the frames, each after its time, then the question.
What llama.cpp computed for a clip up to its last frame (the clip's prefix) is kept: a follow-up
about the same clip removes the last answer from the cache, or restores the prefix's saved cells
(another clip was asked about in between), and evaluates only its own words. The vision encoder
runs once per clip.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from greenroom.models.files import ModelFileError, pinned_sha256, resolve_mmproj, resolve_model_path, verified
from greenroom.models.valley.errors import ClipThreadTooLong
from greenroom.models.valley.runtime_llama import LlamaCppLanguage
from greenroom.models.video.answer import DEFAULT_QUESTION, Answer, Decoding, sample
from greenroom.models.video.frames import Limits
from greenroom.models.vlm.clip import FramesClip, read_clip
from greenroom.models.vlm.layout import frames_text, messages

SEQ = 0
GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT
log = logging.getLogger(__name__)


@llama_cpp.llama_log_callback
def _log_errors(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """The multimodal library's messages: its errors into our log, the rest (load chatter) dropped."""
    if level == GGML_LOG_LEVEL_ERROR:
        log.error("llama.cpp multimodal: %s", text.decode("utf-8", "replace").rstrip())


@dataclass(frozen=True)
class Prefix:
    """A clip's prefix in llama.cpp's cache: its next position, its tokens (images count as their
    embeddings) and its cells, copied out."""

    n_past: int
    tokens: int
    state: bytes = b""


class LlamaCppVision:
    """Frames -> images in the model's chat template -> an answer. Calls are serialised with a lock."""

    runtime = "llama_cpp"

    def __init__(
        self,
        model: str,
        mmproj: str = "",
        *,
        sha256: str = "",
        n_ctx: int = 4096,
        n_threads: int = 0,
        kernels: str = "auto",
        frames: int = 8,
        side: int = 448,
        limits: Limits = Limits(),
        cache_mb: int = 256,
    ) -> None:
        path = verified(resolve_model_path(model), pinned_sha256(model, sha256))
        projector, projector_sha = resolve_mmproj(model, mmproj)
        verified(projector, projector_sha)
        try:
            self.language = LlamaCppLanguage(path, n_ctx=n_ctx, n_threads=n_threads, kernels=kernels)
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{path}: llama.cpp could not load it (corrupt or unsupported GGUF: {e})") from None
        try:
            self._mtmd, self._formatter = _attach(self.language.llm, projector, path)
        except ModelFileError:
            self.language.llm.close()  # the next job loads again: no half-built model stays behind
            raise
        self.marker = mtmd.mtmd_default_marker().decode()
        self.name = path.stem
        self.frames = frames
        self.side = side
        self.limits = limits
        self.cache_bytes = cache_mb << 20
        self._saved: OrderedDict[str, Prefix] = OrderedDict()
        self._resident: tuple[str, Prefix] | None = None  # the clip whose prefix is in the cache
        self._lock = threading.Lock()

    def clip(self, path: str | Path) -> FramesClip:
        """Decode the frames (raises VideoError for bad input)."""
        return read_clip(path, self.frames, self.limits, self.side)

    def render(self, clip: FramesClip, question: str, turns: list[tuple[str, str]]) -> tuple[str, str]:
        """The prompt as (the clip's prefix, up to its last frame; the rest), media markers in the prefix."""
        text = self._formatter(messages=messages(frames_text(clip, self.marker), question, turns)).prompt  # type: ignore[arg-type]
        cut = text.rindex(self.marker) + len(self.marker)
        return text[:cut], text[cut:]

    def ask(
        self,
        clip: FramesClip,
        question: str = DEFAULT_QUESTION,
        turns: list[tuple[str, str]] | None = None,
        decoding: Decoding = Decoding(),
    ) -> Answer:
        """Answer a question about a clip after earlier (question, answer) turns; the oldest later turns
        are dropped when the conversation no longer fits (the first, with the frames, stays)."""
        turns = list(turns or [])
        with self._lock:
            start = time.perf_counter()
            answer = Answer("")
            prefix = self._prefix(clip, answer)
            n_past = prefix.n_past
            while True:
                rest = self.language.llm.tokenize(self.render(clip, question, turns)[1].encode(), False, True)
                room = self.language.n_ctx - n_past - len(rest)
                if room >= min(decoding.max_new_tokens, 64) or len(turns) <= 1:
                    break
                turns = turns[:1] + turns[2:]
            if room <= 0:
                raise ClipThreadTooLong(self.language.n_ctx)
            self.language.pos = n_past
            self.language.feed(rest, logits=True)
            answer.prompt_tokens = prefix.tokens + len(rest)
            text = sample(
                self.language.logits(),
                self.language.step,
                answer,
                min(decoding.max_new_tokens, room),
                lambda t: llama_cpp.llama_vocab_is_eog(self.language.llm._model.vocab, t),
                lambda tokens: self.language.llm.detokenize(tokens).decode("utf-8", "replace"),
                decoding,
                start,
            )
            answer.text = text.strip()
            answer.seconds = time.perf_counter() - start
            return answer

    def _prefix(self, clip: FramesClip, answer: Answer) -> Prefix:
        """Line the cache up with the clip's prefix: kept (the last answer removed), restored, or
        encoded now."""
        memory = llama_cpp.llama_get_memory(self.language.ctx)
        if self._resident is not None and self._resident[0] == clip.key:
            prefix = self._resident[1]
            llama_cpp.llama_memory_seq_rm(memory, SEQ, prefix.n_past, -1)
            answer.reused = True
            return prefix
        self._resident = None
        llama_cpp.llama_memory_clear(memory, True)
        saved = self._saved.get(clip.key)
        if saved is not None:
            self._saved.move_to_end(clip.key)
            buffer = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
            if llama_cpp.llama_state_seq_set_data(self.language.ctx, buffer, len(saved.state), SEQ):
                self._resident = (clip.key, saved)
                answer.reused = True
                return saved
            llama_cpp.llama_memory_clear(memory, True)
        prefix = self._encode(clip, answer)
        self._resident = (clip.key, prefix)
        self._save(clip.key, prefix)
        return prefix

    def _encode(self, clip: FramesClip, answer: Answer) -> Prefix:
        """Tokenize the prefix with the frames and evaluate it: images through the vision encoder
        (timed as ``answer.vision_s``), their embeddings and the text through the language model."""
        prefix = self.render(clip, DEFAULT_QUESTION, [])[0].encode()
        bitmaps: list[mtmd.mtmd_bitmap_p] = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            bitmaps += (self._bitmap(jpeg) for jpeg in clip.jpegs)
            text = mtmd.mtmd_input_text()
            text.text, text.text_len, text.add_special, text.parse_special = prefix, len(prefix), True, True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            if (rc := mtmd.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(text), array, len(bitmaps))) != 0:
                raise ModelFileError(f"llama.cpp could not lay out the frames for this model (mtmd_tokenize: {rc})")
            tokens = mtmd.mtmd_helper_get_n_tokens(chunks)
            if tokens + 64 > self.language.n_ctx:
                raise ClipThreadTooLong(self.language.n_ctx)
            n_past = 0
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                n_past = self._eval_chunk(mtmd.mtmd_input_chunks_get(chunks, i), n_past, answer)
            return Prefix(n_past, tokens)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _eval_chunk(self, chunk: mtmd.mtmd_input_chunk_p, n_past: int, answer: Answer) -> int:
        """Evaluate one chunk of the prefix at ``n_past``; the position after it."""
        if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            # as llama-cpp-python's own chat handler does: mtmd's helper restarts text positions at 0
            # after an image under M-RoPE (0.3.36)
            count = ctypes.c_size_t()
            tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            self.language.pos = n_past
            self.language.feed([tokens[i] for i in range(count.value)])
            return self.language.pos
        start = time.perf_counter()
        if (rc := mtmd.mtmd_encode_chunk(self._mtmd, chunk)) != 0:
            raise ModelFileError(f"llama.cpp's vision encoder failed on a frame ({rc})")
        answer.vision_s += time.perf_counter() - start
        new_n_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self.language.ctx,
            chunk,
            mtmd.mtmd_get_output_embd(self._mtmd),
            n_past,
            SEQ,
            self.language.n_batch,
            ctypes.byref(new_n_past),
            mtmd.mtmd_helper_post_decode_callback(),
            None,
        )
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not evaluate the frames ({rc})")
        return int(new_n_past.value)

    def _bitmap(self, jpeg: bytes) -> mtmd.mtmd_bitmap_p:
        buffer = (ctypes.c_uint8 * len(jpeg)).from_buffer_copy(jpeg)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._mtmd, buffer, len(jpeg), False)
        if not bitmap:
            raise ModelFileError("llama.cpp could not read a frame")
        return bitmap

    def _save(self, key: str, prefix: Prefix) -> None:
        """Copy the prefix's cells out (least recently used dropped beyond ``cache_bytes``)."""
        ctx = self.language.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        if size > self.cache_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ)
        self._saved[key] = Prefix(prefix.n_past, prefix.tokens, bytes(buffer[:written]))
        while sum(len(p.state) for p in self._saved.values()) > self.cache_bytes:
            self._saved.popitem(last=False)


def _attach(llm: llama_cpp.Llama, projector: Path, path: Path) -> tuple[mtmd.mtmd_context_p, Jinja2ChatFormatter]:
    """The projector's multimodal context (freed with ``llm``) and the model's chat template."""
    mtmd.mtmd_log_set(_log_errors, None)
    mtmd.mtmd_helper_log_set(_log_errors, None)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.print_timings = False
    params.n_threads = llm.context_params.n_threads
    context = mtmd.mtmd_init_from_file(str(projector).encode(), llm._model.model, params)
    if not context:
        raise ModelFileError(f"{projector}: llama.cpp could not load it as a projector (mmproj) for {path.name}")
    llm._stack.callback(mtmd.mtmd_free, context)
    if not mtmd.mtmd_support_vision(context):
        raise ModelFileError(f"{projector}: this projector takes no images")
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelFileError(f"{path}: the GGUF has no chat template")
    eos = llm.token_eos()
    formatter = Jinja2ChatFormatter(
        template=template, eos_token=llm._model.token_get_text(eos), bos_token="", stop_token_ids=[eos]
    )
    return context, formatter
