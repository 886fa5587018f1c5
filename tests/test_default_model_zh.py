"""The default model speaks the seed's Chinese character: `greenroom chat --json` run as a user runs
it, on bot.toml's own model and settings, with the ChatHaruhi Haruhi folder loaded by `greenroom
character load`. The replies are judged by the persona evaluation's measures (tests/bench/eval_persona.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenroom.core.config import load_config
from greenroom.core.prompt import STORY_PREFIX
from greenroom.models.files import resolve_model_path
from tests.bench.eval_persona import has_wrapper, is_cut_off, is_echo, language_share
from tests.conftest import ROOT, reference_data

pytestmark = pytest.mark.reference

GREENROOM = str(Path(sys.executable).parent / "greenroom")
MESSAGES = ["学校里的社团都太无聊了怎么办？", "那你打算自己创立一个社团吗？", "这个社团要做些什么？"]


@pytest.fixture(scope="module")
def default():
    """bot.toml as shipped, without the environment's overrides."""
    return load_config(environ={})


@pytest.fixture(scope="module")
def turns(tmp_path_factory) -> list[dict]:
    folder = reference_data("chatharuhi/haruhi")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENROOM__")}
    env["GREENROOM_DATA_DIR"] = str(tmp_path_factory.mktemp("zh"))

    def greenroom(*args: str) -> str:
        done = subprocess.run([GREENROOM, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "loaded haruhi" in greenroom("character", "load", str(folder))
    out = greenroom("chat", "--json", "--character", "haruhi", *(x for m in MESSAGES for x in ("--message", m)))
    return [json.loads(line) for line in out.splitlines()]


def test_the_default_model_answers_in_complete_chinese_sentences(turns, default):
    assert {t["model"] for t in turns} == {resolve_model_path(default.llm.model).stem}  # bot.toml's, not the tests'
    for asked, turn in zip(MESSAGES, turns, strict=True):
        reply = turn["reply"]
        assert language_share(reply, "zh") >= 0.8, reply
        assert not is_cut_off(reply, turn["completion_tokens"] >= default.persona.max_reply_tokens), reply
        assert not has_wrapper(reply, ("haruhi", "春日", "凉宫春日")), reply
        assert not is_echo(reply, asked), reply


def test_the_prompt_is_system_then_history_then_scenes_and_the_message(turns):
    system = (reference_data("chatharuhi/haruhi") / "system_prompt.txt").read_text(encoding="utf-8").strip()
    for i, (asked, turn) in enumerate(zip(MESSAGES, turns, strict=True)):
        messages = turn["messages"]
        assert turn["mode"] == "chat" and turn["history_turns"] == i
        assert [m["role"] for m in messages] == ["system", *["user", "assistant"] * i, "user"]
        assert messages[0]["content"] == system
        history = [m["content"] for m in messages[1:-1]]
        assert history == [x for a, t in zip(MESSAGES[:i], turns[:i]) for x in (a, t["reply"])]  # in order
        last = messages[-1]["content"]
        assert turn["stories"] and last.startswith(STORY_PREFIX) and last.endswith(asked)
        assert all(story["text"] in last for story in turn["stories"])  # this message's scenes, before it
