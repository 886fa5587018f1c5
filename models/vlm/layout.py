"""How a clip and the questions about it are laid out for a vision-language model: each frame
as an image after its time, the first question with the frames, later ones as chat turns."""

from __future__ import annotations

import base64
from typing import Any

from greenroom.models.vlm.clip import FramesClip

SYSTEM = (
    "You watch video clips and photos people share in a chat and answer their questions about them, "
    "briefly, from what the pictures show."
)


def clock(seconds: float) -> str:
    """``1:05.5`` for 65.5 seconds."""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def intro(clip: FramesClip) -> str:
    if clip.still:
        return "A photo:"
    return f"A video clip, {len(clip.jpegs)} frames in order, each after its time:"


def frames_text(clip: FramesClip, marker: str) -> str:
    """The frames as text with a media ``marker`` where each image goes (llama.cpp's mtmd)."""
    if clip.still:
        return f"{intro(clip)}\n{marker}\n"
    return intro(clip) + "\n" + "".join(f"{clock(t)} {marker}\n" for t in clip.times)


def messages(first: Any, question: str, turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """System prompt, the clip (``first``: its text or content parts) with the first question, then
    the later questions and answers, ending in ``question``."""
    asked = [q for q, _ in turns] + [question]
    answers = [a for _, a in turns]
    content = first + asked[0] if isinstance(first, str) else [*first, {"type": "text", "text": asked[0]}]
    out: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    for answer, later in zip(answers, asked[1:], strict=True):
        out += [{"role": "assistant", "content": answer}, {"role": "user", "content": later}]
    return out


def frame_parts(clip: FramesClip, send_video: bool) -> list[dict[str, Any]]:
    """The clip as OpenAI content parts: one ``video_url`` (servers that take video), or each frame's
    time and its ``image_url`` (base64 JPEG)."""
    if send_video and clip.video:
        url = f"data:{clip.mime};base64,{base64.b64encode(clip.video).decode()}"
        return [{"type": "text", "text": "A video clip:"}, {"type": "video_url", "video_url": {"url": url}}]
    parts: list[dict[str, Any]] = [{"type": "text", "text": intro(clip)}]
    for t, jpeg in zip(clip.times, clip.jpegs, strict=True):
        if not clip.still:
            parts.append({"type": "text", "text": clock(t)})
        url = f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
