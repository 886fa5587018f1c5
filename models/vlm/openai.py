"""An OpenAI-compatible server as the video backend (vLLM, llama.cpp's server): the frames as
``image_url`` parts after their times, or the clip whole as one ``video_url`` part. Streaming,
timeouts, retries and readiness are the chat backend's (`models/llm/openai.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

from greenroom.models.llm import Generation, Messages, Sampling
from greenroom.models.llm.openai import OpenAIChatLLM
from greenroom.models.video.answer import DEFAULT_QUESTION, Answer, Decoding
from greenroom.models.video.frames import Limits
from greenroom.models.vlm.clip import FramesClip, read_clip
from greenroom.models.vlm.layout import frame_parts, messages


class OpenAIVision:
    """Questions about clips, answered by a vision-language model on a server."""

    runtime = "openai"

    def __init__(
        self,
        base_url: str,
        server_model: str = "",
        api_key: str = "",
        *,
        send: str = "frames",
        timeout: float = 120.0,
        retries: int = 2,
        frames: int = 8,
        side: int = 448,
        limits: Limits = Limits(),
        n_ctx: int = 4096,
    ) -> None:
        self.server = OpenAIChatLLM(base_url, server_model or "default", "estimate", api_key, n_ctx, timeout, retries)
        self.name = server_model or base_url
        self.send_video = send == "video"
        self.frames = frames
        self.side = side
        self.limits = limits

    def ping(self, timeout: float = 3.0) -> None:
        """Raise LLMUnavailable unless the server answers (readiness)."""
        self.server.ping(timeout)

    def clip(self, path: str | Path) -> FramesClip:
        """Decode the frames (and keep the file when the server takes video)."""
        return read_clip(path, self.frames, self.limits, self.side, keep_video=self.send_video)

    def ask(
        self,
        clip: FramesClip,
        question: str = DEFAULT_QUESTION,
        turns: list[tuple[str, str]] | None = None,
        decoding: Decoding = Decoding(),
    ) -> Answer:
        start = time.perf_counter()
        answer = Answer("")
        gen = Generation()
        sampling = Sampling(
            max_tokens=decoding.max_new_tokens, temperature=decoding.temperature, top_p=1.0, seed=decoding.seed
        )
        # content parts are the OpenAI API's own message shape; the chat backend passes them through
        chat = cast(Messages, messages(frame_parts(clip, self.send_video), question, list(turns or [])))
        pieces: list[str] = []
        for piece in self.server.stream(chat, sampling, gen):
            if not pieces:
                answer.first_token_s = time.perf_counter() - start
            pieces.append(piece)
        answer.text = "".join(pieces).strip()
        answer.prompt_tokens = gen.prompt_tokens
        answer.seconds = time.perf_counter() - start
        return answer
