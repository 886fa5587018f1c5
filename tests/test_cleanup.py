"""Replies that read right whatever the model: no wrapper, no echo, no loop, no cut-off sentence,
stops at every speaker; in English and Chinese. A scripted model streams given pieces through the
real persona turn, and the tests assert what the user sees, while it streams and at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroom.core.cleanup import Cleanup, cut_repeats, remove_echo, trim_to_sentence
from greenroom.core.commands import Context, Level
from greenroom.core.persona import PersonaEngine
from greenroom.memory.history import Turn
from greenroom.models.llm import Generation, Messages, Sampling
from tests.helpers import RecordingReplier, message

WHY = "Why is your tea always cold?"
ADMIRE = "老李，你这辈子最佩服的人是谁？"


class ScriptedLLM:
    """Streams one script per call, a few characters a piece (it applies no stop strings, as a server
    past the OpenAI API's four); records what it was asked."""

    name, n_ctx, tokenizer_id, slots = "scripted", 4096, "scripted", 1

    def __init__(self, *scripts: str, finish: str = "stop") -> None:
        self.scripts, self.finish = list(scripts), finish
        self.calls: list[tuple[Messages, Sampling]] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        self.calls.append((messages, sampling))
        script = self.scripts.pop(0)
        for i in range(0, len(script), 3):
            if gen.cancel.is_set():
                gen.finish_reason = "cancelled"
                return
            gen.completion_tokens += 1
            yield script[i : i + 3]
        gen.finish_reason = self.finish


@pytest.fixture
def laoli(app, tmp_path: Path) -> str:
    """A Chinese character, 老李, in the chat `test:zh` (its mode from ``persona.mode`` in character.toml)."""

    def load(mode: str = "chat") -> str:
        folder = tmp_path / f"laoli-{mode}"
        (folder / "texts").mkdir(parents=True)
        (folder / "system_prompt.txt").write_text("你正在扮演老李，一个老木匠。", encoding="utf-8")
        (folder / "character.toml").write_text(
            f'name = "laoli-{mode}"\ndisplay_name = "老李"\n[persona]\nmode = "{mode}"\n', encoding="utf-8"
        )
        (folder / "texts" / "1.txt").write_text("小王:「老李，你好。」\n老李:「坐吧，喝茶。」", encoding="utf-8")
        app.characters.load(folder)
        app.settings.set("test:zh", "character", f"laoli-{mode}")
        app.settings.set("test:zh", f"greeted:laoli-{mode}", "1")
        return "zh"

    return load


async def turn(app, llm: ScriptedLLM, text: str, chat: str = "en", user: str = "tom", **persona) -> RecordingReplier:
    """One persona turn with the scripted model; every update is shown (no throttle)."""
    config = app.config.persona.model_copy(update=persona)
    engine = PersonaEngine(app.library, app.history, app.settings, llm, config)
    app.settings.set(f"test:{chat}", "greeted:wren", "1")
    replier = RecordingReplier()
    await engine.reply(Context(message(text, user=user, chat=chat), replier, Level.USER))
    return replier


def shown(replier: RecordingReplier) -> list[str]:
    """Everything the user saw of the reply, in order: the first send, then each edit."""
    return [text for kind, text in replier.events if kind in ("send", "edit")]


# ----- the pieces ---------------------------------------------------------------------------------


def test_a_cut_off_reply_ends_at_its_last_complete_sentence():
    assert trim_to_sentence("My tea is always cold. I make it at the half and I have to make") == (
        "My tea is always cold."
    )
    assert trim_to_sentence('She said "Go." Then') == 'She said "Go."'
    assert trim_to_sentence("Mr. Hale is late. And Mr") == "Mr. Hale is late."  # "Mr." ends no sentence
    assert (
        trim_to_sentence("我师傅手艺好。他做的椅子「一百年不坏！」他说，可是")
        == "我师傅手艺好。他做的椅子「一百年不坏！」"
    )
    # no complete sentence: the last clause break if it keeps most of it, marked unfinished
    assert (
        trim_to_sentence("I make it at the half, and I drink it at the")
        == "I make it at the half, and I drink it at the…"
    )
    assert trim_to_sentence("我最佩服的是我师傅，他做了一辈子椅子，从来") == "我最佩服的是我师傅，他做了一辈子椅子…"


def test_a_clause_said_again_and_again_is_kept_once():
    assert cut_repeats("I'm fine, I'm fine, I'm fine, really.") == "I'm fine, really."
    assert cut_repeats("我挺高兴的，我挺高兴的，我挺高兴的。") == "我挺高兴的。"
    assert cut_repeats("Places. Lights. Places. Lights. Go.") == "Places. Lights. Go."
    assert cut_repeats("我挺高兴的，我挺高兴的，我挺高") == "我挺高兴的，"  # an unfinished copy goes too
    assert cut_repeats("I know. You know. We all know.") == "I know. You know. We all know."


def test_an_echo_is_a_leading_near_copy_of_the_message():
    assert remove_echo(f"{WHY} I forget it.", WHY) == "I forget it."
    assert remove_echo("Why is my tea always cold? Habit.", WHY) == "Habit."
    assert remove_echo(f"Tom:「{WHY}」 I forget it.", WHY, ["Tom"]) == "I forget it."
    assert remove_echo("老李，你这辈子最佩服的人是马上。我师傅。", ADMIRE) == "我师傅。"
    assert remove_echo("I forget it, love.", WHY) == "I forget it, love."
    assert remove_echo("Hi!", "Hi!") == "Hi!"  # a short greeting may be echoed


def test_stops_are_cut_and_held_back_while_they_may_be_coming():
    clean = Cleanup(["Wren"], "hello", ["Tom"], ["\nTom:", "\nMr. Hale:"])
    assert clean.at_stop("Places.\nMr. Hale:「Thanks」") == "Places."
    assert clean.at_stop("Places.") is None
    assert clean.partial("Places.\nMr. Ha") == "Places."
    assert clean.partial("Wre") == ""  # may become `Wren:`


# ----- what the user sees, with a scripted model ---------------------------------------------------


async def test_no_wrapper_is_ever_shown(app, laoli):
    llm = ScriptedLLM("Wren:「My tea is always cold. I make it at the half.」")
    replier = await turn(app, llm, "Tell me about your tea.")
    assert replier.messages[-1] == "My tea is always cold. I make it at the half."
    assert all(replier.messages[-1].startswith(t) for t in shown(replier))  # never a bit of `Wren:「`
    llm = ScriptedLLM("老李：「坐吧，喝茶。」")
    replier = await turn(app, llm, "老李，我能坐这儿吗？", chat=laoli())
    assert shown(replier)[-1] == "坐吧，喝茶。" and all("坐吧，喝茶。".startswith(t) for t in shown(replier))


async def test_an_echo_is_removed_and_never_shown(app):
    llm = ScriptedLLM(f"Tom:「{WHY}」 I make it at the half and forget it, love.")
    replier = await turn(app, llm, WHY)
    assert replier.messages[-1] == "I make it at the half and forget it, love."
    assert all(replier.messages[-1].startswith(t) for t in shown(replier))  # no bit of the echo either
    assert len(llm.calls) == 1


async def test_a_reply_that_only_echoes_is_tried_once_more_primed(app, laoli):
    llm = ScriptedLLM("老李，你这辈子最佩服的人是马上。", "我师傅。他做的椅子一百年都不坏。")
    replier = await turn(app, llm, ADMIRE, chat=laoli())
    assert replier.messages[-1] == "嗯，我师傅。他做的椅子一百年都不坏。"
    assert all(replier.messages[-1].startswith(t) for t in shown(replier))
    assert llm.calls[1][0][-1] == {"role": "assistant", "content": "嗯，"}  # primed past the question
    assert llm.calls[1][1].seed != llm.calls[0][1].seed
    llm = ScriptedLLM(WHY, "I make it at the half.")
    replier = await turn(app, llm, WHY)
    assert replier.messages[-1] == "Well, I make it at the half." and len(llm.calls) == 2
    said = "The show must go on, whatever happens."  # agreeing twice: the second try stands as it is
    llm = ScriptedLLM("The show must go on, whatever happens!", "the show must go on, whatever happens.")
    replier = await turn(app, llm, said)
    assert replier.messages[-1] == "Well, the show must go on, whatever happens." and len(llm.calls) == 2


async def test_loops_are_cut_and_the_penalties_reach_the_model(app, laoli):
    llm = ScriptedLLM("我挺高兴的，我挺高兴的，我挺高兴的，我挺高兴的。")
    replier = await turn(app, llm, "老李，今天过得怎么样？", chat=laoli(), repeat_penalty=1.3, frequency_penalty=0.4)
    assert replier.messages[-1] == "我挺高兴的。"
    assert all("高兴的，我挺高兴" not in t for t in shown(replier))
    assert (llm.calls[0][1].repeat_penalty, llm.calls[0][1].frequency_penalty) == (1.3, 0.4)
    llm = ScriptedLLM("I'm fine, I'm fine, I'm fine, really.")
    assert (await turn(app, llm, "How are you?")).messages[-1] == "I'm fine, really."


@pytest.mark.parametrize(
    "chat,script,trimmed",
    [
        (
            "en",
            "My tea is always cold, love, because I make it at the half. And I have to make",
            "My tea is always cold, love, because I make it at the half.",
        ),
        ("zh", "我师傅手艺好。他做的椅子一百年都不会", "我师傅手艺好。"),
    ],
)
async def test_a_reply_cut_by_the_token_limit_ends_at_a_complete_sentence(app, laoli, chat, script, trimmed):
    if chat == "zh":
        laoli()
    limit = len(script) // 3  # pieces of three characters: the script ends at the token limit
    replier = await turn(app, ScriptedLLM(script, finish="length"), "Go on.", chat=chat, max_reply_tokens=limit)
    assert replier.messages[-1] == trimmed  # the streamed message ends up trimmed
    assert all(trimmed.startswith(t) for t in shown(replier))  # near the limit, no unfinished sentence shows
    replier = await turn(app, ScriptedLLM(script, finish="stop"), "Go on.", chat=chat)
    assert replier.messages[-1] == script  # a reply that ended by itself is left whole


async def test_every_speaker_in_the_prompt_is_a_stop(app):
    app.history.add("test:en", "wren", Turn("test:mika", "Mika", "Hello Wren.", "Evening.", "Wren:「Evening.」"))
    llm = ScriptedLLM("Cold tea keeps me awake, love.\nMr. Hale:「It always is.」\nTom: And then")
    replier = await turn(app, llm, "Your tea's gone cold again.")
    stops = llm.calls[0][1].stop
    for name in ("Tom", "Mika", "Wren", "Wren Ashby", "Mr. Hale"):  # user, history, aliases, the stories
        assert {f"\n{name}:", f"\n{name}：", f"\n{name}「"} <= set(stops), name
    assert replier.messages[-1] == "Cold tea keeps me awake, love."


async def test_haruhi2_primes_the_reply_with_the_characters_wrapper(app, laoli):
    llm = ScriptedLLM("Places, please.」\nWren:「And mind the cables.」")
    replier = await turn(app, llm, "Can I whistle backstage?", mode="haruhi2")
    assert llm.calls[0][0][-1] == {"role": "assistant", "content": "Wren:「"}
    assert llm.calls[0][0][-2] == {"role": "user", "content": "Tom:「Can I whistle backstage?」"}
    assert replier.messages[-1] == "Places, please."
    assert all(replier.messages[-1].startswith(t) for t in shown(replier))
    assert replier.traces[-1]["prime"] == "Wren:「"
    [stored] = app.history.recent("test:en", "wren", 1)
    assert stored.reply_raw == "Wren:「Places, please.」"
    llm = ScriptedLLM("坐吧，喝茶。」")
    replier = await turn(app, llm, "老李，我能坐这儿吗？", chat=laoli("haruhi2"))
    assert llm.calls[0][0][-1] == {"role": "assistant", "content": "老李:「"}
    assert shown(replier)[-1] == "坐吧，喝茶。" and all("坐吧，喝茶。".startswith(t) for t in shown(replier))


# ----- the backends: priming and penalties --------------------------------------------------------


def test_llama_cpp_continues_a_primed_reply_with_the_penalties(llm, monkeypatch):
    asked = {}
    original = llm.llama.create_completion

    def spy(**kwargs):
        asked.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(llm.llama, "create_completion", spy)
    messages = [{"role": "user", "content": "Name three colours."}, {"role": "assistant", "content": "Red, green and"}]
    sampling = Sampling(max_tokens=4, temperature=0.0, repeat_penalty=1.3, frequency_penalty=0.5)
    assert "".join(llm.stream(messages, sampling, Generation()))
    prompt = llm.llama.detokenize(asked["prompt"], special=True).decode()
    assert prompt.endswith("<|im_start|>assistant\nRed, green and")  # left open, to be continued
    assert (asked["repeat_penalty"], asked["frequency_penalty"]) == (1.3, 0.5)


def test_the_openai_backend_sends_the_penalty_and_no_prime():
    import json

    import httpx

    from greenroom.models.llm.openai import OpenAIChatLLM

    bodies = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        event = {"choices": [{"delta": {"content": "Red."}, "finish_reason": "stop"}]}
        return httpx.Response(200, text=f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n")

    backend = OpenAIChatLLM("http://llm.test/v1", "m", tokenizer="estimate")
    backend._client = httpx.Client(base_url="http://llm.test/v1", transport=httpx.MockTransport(server))
    messages = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Wren:「"}]
    assert list(backend.stream(messages, Sampling(frequency_penalty=0.4), Generation())) == ["Red."]
    assert bodies[0]["messages"] == messages[:1] and bodies[0]["frequency_penalty"] == 0.4
