"""Clips in the chat: the job queue, progress, follow-up questions, bad clips, and video switched off.

Valley is a tiny random checkpoint converted for the CPU runtime (llama.cpp); the character's
replies come from the real SmolLM2. Expected answers are computed with the same model outside
the chat, so the tests check the flow (what reaches the model, what the user sees), not the text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import threading

import pytest
from PIL import Image

from greenroom.compose import Greenroom
from greenroom.core.events import Attachment, AttachmentKind
from greenroom.core.video import BUSY, CLOSING, OFF, PHOTO_QUESTION, ClipThread, LocalThreads
from greenroom.models.video.answer import DEFAULT_QUESTION, Decoding
from tests.helpers import RecordingReplier, answer_with, message


@pytest.fixture
def make_app(open_app, converted):
    """A Greenroom with ``[video]`` settings (the tiny converted checkpoint unless they name another)."""

    def make(video: str = "") -> Greenroom:
        if "checkpoint" not in video:
            video = f'checkpoint = "{converted}"\nvision_dtype = "float32"\n{video}'
        return open_app(f"[video]\n{video}\nmax_new_tokens = 8\n")

    return make


@pytest.fixture
def video_app(make_app):
    return make_app()


def clip_message(data: bytes, text: str = "", name: str = "clip.mkv", **kw):
    async def fetch() -> bytes:
        return data

    attachment = Attachment(AttachmentKind.VIDEO, name, len(data), 20_000_000, mime="video/x-matroska", fetch=fetch)
    return dataclasses.replace(message(text, **kw), attachments=(attachment,))


def expected(app: Greenroom, data: bytes, tmp_path, question: str = DEFAULT_QUESTION, turns=()) -> str:
    path = tmp_path / "expected.mkv"
    path.write_bytes(data)
    return app.video_model.ask(app.video_model.clip(path), question, list(turns), Decoding(8)).text


class Gate:
    """Holds the video worker inside the model loader until released (threading events, no sleeps)."""

    def __init__(self, app: Greenroom) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        load = app.video.load
        app.video.load = lambda: (self.entered.set(), self.released.wait(), load())[2]

    async def wait_entered(self) -> None:
        await asyncio.to_thread(self.entered.wait)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc) -> None:  # pass or fail, no worker thread is left waiting
        self.released.set()


async def send(app: Greenroom, msg, replier: RecordingReplier) -> None:
    done = await app.dispatcher.submit(msg, replier)
    if done is not None:
        await done


async def test_posted_clip_is_acknowledged_then_described(video_app, clips, tmp_path) -> None:
    replier = RecordingReplier()
    await send(video_app, clip_message(clips["a"]), replier)
    assert replier.messages == ["Watching your clip…"]
    await video_app.video.idle()
    description = expected(video_app, clips["a"], tmp_path)
    assert description and replier.messages == [description]  # the status line became the description
    assert replier.events[-1] == ("edit", description)


async def test_text_chat_is_answered_while_a_clip_is_being_watched(video_app, clips) -> None:
    video, text = RecordingReplier(), RecordingReplier()
    with Gate(video_app) as gate:
        await send(video_app, clip_message(clips["a"], chat="c1"), video)
        await gate.wait_entered()
        await send(video_app, message("Hello Wren, how are you?", chat="c2"), text)
        assert text.messages and text.messages[-1].strip()  # the character answered
        assert video.messages == ["Watching your clip…"]  # the clip is still being watched
    await video_app.video.idle()
    assert video.messages != ["Watching your clip…"]


async def test_full_queue_answers_busy_and_keeps_order(make_app, clips, tmp_path) -> None:
    app = make_app("queue_size = 2\nworkers = 1")
    repliers = [RecordingReplier() for _ in range(4)]
    with Gate(app) as gate:
        await send(app, clip_message(clips["a"], chat="c1"), repliers[0])
        await gate.wait_entered()  # job 1 is out of the queue, in a worker
        await send(app, clip_message(clips["b"], chat="c1"), repliers[1])
        await send(app, clip_message(clips["c"], chat="c1"), repliers[2])
        await send(app, clip_message(clips["a"], chat="c9"), repliers[3])
        assert repliers[3].messages == [BUSY.format(n=2)]
        assert repliers[2].messages == ["Watching your clip… (1 ahead of it)"]
    await app.video.idle()
    assert [r.messages[0] for r in repliers[:3]] == [expected(app, clips[n], tmp_path) for n in "abc"]
    thread = app.video.threads[message("", chat="c1").key]
    assert thread.turns[0][1] == repliers[2].messages[0]  # the last clip posted is the one followed up


async def test_follow_up_questions_go_back_to_the_model_with_the_clip(video_app, clips, tmp_path) -> None:
    replier = RecordingReplier()
    await send(video_app, clip_message(clips["b"]), replier)
    await video_app.video.idle()
    description = replier.messages[0]
    correction = "The liquid is egg, not milk; fix your description."
    reply = dataclasses.replace(message(correction), reply_to_id="0")  # a reply to the description
    await send(video_app, reply, replier)
    await video_app.video.idle()
    turns = [(DEFAULT_QUESTION, description)]
    assert replier.messages[1] == expected(video_app, clips["b"], tmp_path, correction, turns)
    question = "What colour is the pan in the video?"
    await send(video_app, message(question), replier)  # about the clip, in the window
    await video_app.video.idle()
    turns.append((correction, replier.messages[1]))
    assert replier.messages[2] == expected(video_app, clips["b"], tmp_path, question, turns)
    await send(video_app, message("/video ask Is anyone cooking?"), replier)  # asked outright
    await video_app.video.idle()
    turns.append((question, replier.messages[2]))
    assert replier.messages[3] == expected(video_app, clips["b"], tmp_path, "Is anyone cooking?", turns)


async def test_other_messages_go_to_the_character_who_knows_what_the_clip_showed(video_app, clips) -> None:
    replier = RecordingReplier()
    await send(video_app, clip_message(clips["a"], user="mei"), replier)
    await video_app.video.idle()
    description = replier.messages[0]
    await send(video_app, message("What is your favourite book?"), replier)  # a question, in the window
    trace = replier.traces[-1]
    assert trace["character"] == "wren"  # the persona answered, not the video model
    assert len(video_app.video.threads[message("").key].turns) == 1
    last = trace["messages"][-1]
    assert last["role"] == "user" and "What is your favourite book?" in last["content"]
    assert "Mei shared a video clip" in last["content"] and description in last["content"]


async def test_after_the_window_questions_go_to_the_character(video_app, clips) -> None:
    now = [1000.0]
    video_app.video.clock = lambda: now[0]
    replier = RecordingReplier()
    await send(video_app, clip_message(clips["a"]), replier)
    await video_app.video.idle()
    now[0] += video_app.config.video.followup_minutes * 60 + 1
    await send(video_app, message("What is your favourite book?"), replier)
    assert replier.traces and replier.traces[-1]["character"] == "wren"  # the persona answered, not Valley
    assert len(video_app.video.threads[message("").key].turns) == 1


async def test_long_jobs_get_a_progress_note(make_app, clips) -> None:
    app = make_app("progress_seconds = 0.05")
    edited = asyncio.Event()

    class Watching(RecordingReplier):
        async def edit(self, ref, text):
            await super().edit(ref, text)
            edited.set()

    replier = Watching()
    with Gate(app):
        await send(app, clip_message(clips["a"]), replier)
        await edited.wait()  # the loader is held, so only a progress note can edit the status
        assert replier.messages == ["Still watching your clip: waiting for my turn…"]
    await app.video.idle()
    assert not replier.messages[0].startswith("Still watching")


@pytest.mark.parametrize(
    "data, name, words",
    [
        (b"", "empty.mp4", "empty"),
        (os.urandom(4000), "noise.mp4", "could not read that as a video"),
    ],
)
async def test_bad_clips_get_a_specific_message_and_the_bot_keeps_serving(video_app, data, name, words) -> None:
    replier = RecordingReplier()
    await send(video_app, clip_message(data, name=name), replier)
    await video_app.video.idle()
    assert words in replier.messages[0]
    await send(video_app, message("Are you still there?"), replier)
    assert replier.traces  # the character still answers


async def test_character_comments_on_the_clip_when_configured(make_app, clips) -> None:
    app = make_app("comment = true")
    replier = RecordingReplier()
    await send(app, clip_message(clips["a"]), replier)
    await app.video.idle()
    await app.dispatcher.idle()  # the comment takes its turn in the conversation's lane
    assert len(replier.messages) >= 2 and replier.traces[-1]["character"] == "wren"  # (a greeting may come too)
    assert replier.traces[-1]["reply"] == replier.messages[-1]
    assert "It shows: " + replier.messages[0] in replier.traces[-1]["messages"][-1]["content"]


async def test_the_comment_waits_for_the_turn_in_progress_in_its_conversation(make_app, clips) -> None:
    app = make_app("comment = true")
    turn_started, turn_may_end = asyncio.Event(), asyncio.Event()

    async def slow_turn(ctx) -> None:
        turn_started.set()
        await turn_may_end.wait()
        await ctx.say("finished my turn")

    answer_with(app, slow_turn)
    clip, text = RecordingReplier(), RecordingReplier()
    await send(app, clip_message(clips["a"]), clip)
    await app.dispatcher.submit(message("wait, one more thing"), text)
    await turn_started.wait()
    await app.video.idle()  # described while the turn is still running
    assert clip.messages[0] != "Watching your clip…" and clip.traces == []  # the comment has not started
    turn_may_end.set()
    await app.dispatcher.idle()
    assert text.messages == ["finished my turn"] and clip.traces[-1]["character"] == "wren"


async def test_video_off_says_how_to_turn_it_on(app, clips) -> None:
    replier = RecordingReplier()
    await send(app, clip_message(clips["a"]), replier)
    assert replier.messages == [OFF]


async def test_with_video_off_a_photo_and_its_caption_go_to_the_character(app) -> None:
    replier = RecordingReplier()
    await send(app, photo_message("Look at my cat!"), replier)
    assert OFF not in replier.messages
    assert replier.traces and replier.traces[-1]["character"] == "wren"


async def test_missing_weights_are_reported_and_chat_goes_on(make_app, clips, tmp_path) -> None:
    app = make_app(f'checkpoint = "{tmp_path / "nowhere"}"')
    replier = RecordingReplier()
    await send(app, clip_message(clips["a"]), replier)
    await app.video.idle()
    assert replier.messages[0].startswith(
        "Video description is unavailable right now: Valley checkpoint folder not found"
    )
    await send(app, message("Hello?"), replier)
    assert replier.traces


async def test_configured_limits_apply_to_clips_in_chat(make_app, clips) -> None:
    app = make_app("max_side = 64")
    replier = RecordingReplier()
    await send(app, clip_message(clips["a"]), replier)
    await app.video.idle()
    assert replier.messages == ["That video is 80x60; I take at most 64 pixels on a side."]


async def test_shutdown_tells_the_senders_of_unfinished_clips(video_app, clips) -> None:
    running, waiting = RecordingReplier(), RecordingReplier()
    with Gate(video_app) as gate:
        await send(video_app, clip_message(clips["a"], chat="c1"), running)
        await gate.wait_entered()
        await send(video_app, clip_message(clips["b"], chat="c2"), waiting)
        await video_app.video.close()
    assert running.messages == [CLOSING] and waiting.messages == [CLOSING]


async def test_an_unexpected_error_in_the_video_path_is_logged_and_shown_as_an_id(video_app, clips, caplog) -> None:
    class Broken:
        def clip(self, path):
            raise ValueError("tensor shape (3, 7) internal detail")

    video_app.video.load = Broken
    replier = RecordingReplier()
    await send(video_app, clip_message(clips["a"]), replier)
    await video_app.video.idle()
    [answer] = replier.messages
    assert "internal detail" not in answer and answer.startswith("Sorry, something went wrong")
    error_id = answer.rsplit("error id ", 1)[1].rstrip(").")
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info and "internal detail" in str(record.exc_info[1])  # the traceback is in the log


@pytest.fixture
def vlm_app(make_app, tiny_vlm):
    """The chat with the tiny vision-language model in llama.cpp as its video backend."""
    return make_app(
        f'backend = "llama_cpp"\nmodel = "{tiny_vlm.model}"\nmmproj = "{tiny_vlm.mmproj}"\n'
        "frames = 4\nframe_side = 112\nn_ctx = 2048\n"
    )


def photo_message(text: str = "", **kw):
    data = io.BytesIO()
    Image.new("RGB", (224, 168), (30, 90, 200)).save(data, "PNG")

    async def fetch() -> bytes:
        return data.getvalue()

    attachment = Attachment(
        AttachmentKind.IMAGE, "photo.png", len(data.getvalue()), 20_000_000, "", "image/png", fetch=fetch
    )
    return dataclasses.replace(message(text, **kw), attachments=(attachment,))


async def test_a_vision_language_model_describes_clips_and_photos_in_chat(vlm_app, clips, tmp_path) -> None:
    replier = RecordingReplier()
    await send(vlm_app, clip_message(clips["a"]), replier)
    assert replier.messages == ["Watching your clip…"]
    await vlm_app.video.idle()
    assert replier.messages == [expected(vlm_app, clips["a"], tmp_path)]
    question = "What is in the video?"
    await send(vlm_app, message(question), replier)
    await vlm_app.video.idle()
    assert replier.messages[-1] == expected(
        vlm_app, clips["a"], tmp_path, question, [(DEFAULT_QUESTION, replier.messages[0])]
    )
    photo = RecordingReplier()
    await send(vlm_app, photo_message(chat="c2"), photo)
    assert photo.messages[0] == "Looking at your photo…"
    await vlm_app.video.idle()
    thread = vlm_app.video.threads[message("", chat="c2").key]
    assert thread.photo and thread.clip.still and photo.messages == [thread.turns[0][1]]
    assert thread.turns[0][0] == PHOTO_QUESTION


def test_clip_threads_past_every_window_are_let_go() -> None:
    threads = LocalThreads(keep=3600)
    old, new = message("", chat="old").key, message("", chat="new").key
    threads.put(old, ClipThread(object(), [("q", "a")], at=1000.0))
    threads.put(new, ClipThread(object(), [("q", "a")], at=1000.0 + 3601))
    assert old not in threads and threads.summary(new) is not None
