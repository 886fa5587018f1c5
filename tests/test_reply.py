"""Splitting long replies and streaming them with throttled edits."""

from greenroom.core.reply import StreamingReply, split_text
from tests.helpers import RecordingReplier


def test_split_prefers_paragraphs_and_respects_the_limit():
    text = ("para one line. " * 5).strip() + "\n\n" + ("second para. " * 5).strip()
    parts = split_text(text, 90)
    assert all(len(p) <= 90 for p in parts)
    assert parts[0] == ("para one line. " * 5).strip()


def test_split_closes_and_reopens_code_fences():
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(40)) + "\n```\nafter"
    parts = split_text(code, 120)
    assert len(parts) > 1
    for p in parts:
        assert len(p) <= 120
        assert p.count("```") % 2 == 0, p  # every chunk's fences are balanced
    assert parts[1].startswith("```python\n")
    assert "".join(parts).count("x39 = 39") == 1


def test_split_never_loses_text():
    words = " ".join(f"w{i}" for i in range(500))
    assert " ".join(split_text(words, 50)).split() == words.split()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_streaming_waits_for_placeholder_delay_then_throttles_edits():
    replier = RecordingReplier(edit_interval=1.2, placeholder_delay=1.0)
    clock = Clock()
    stream = StreamingReply(replier, clock)
    await stream.update("Hel")  # t=0: too early for a placeholder
    clock.now = 1.0
    await stream.update("Hello")  # first message appears
    clock.now = 1.5
    await stream.update("Hello wo")  # within 1.2 s of the last: no edit
    clock.now = 2.3
    await stream.update("Hello world")  # edit allowed
    await stream.finish("Hello world!")
    assert replier.events == [("send", "Hello"), ("edit", "Hello world"), ("edit", "Hello world!")]


async def test_finish_splits_a_long_reply_across_messages():
    replier = RecordingReplier(max_len=40)
    stream = StreamingReply(replier)
    await stream.finish("word " * 30)
    assert len(replier.messages) == 4 and all(len(m) <= 40 for m in replier.messages)
