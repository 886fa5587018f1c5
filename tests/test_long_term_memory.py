"""Long-term memory per conversation: a fact told many turns ago, long out of the history window,
comes back into the prompt when it is asked about, with who said it and when; never in another
conversation; /forget and /reset clear it as each user and chat admin may; it survives a restart;
a vector store that is down costs the memories of that turn, never the turn.

Real parts: the embedder, Qdrant Edge on disk, the database, the commands through the dispatcher;
a Qdrant server is the fake in tests/fakes/qdrant_server.py (no Qdrant binary installs here). The
model is scripted (it answers "Noted." and records its prompts): recall is about the prompt.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select

from greenroom.core.commands import Context, Level
from greenroom.core.persona import PersonaEngine
from greenroom.core.prompt import MEMORY_PREFIX, Budgets, PastTurn, Recalled, build_chat, memory_block
from greenroom.memory.db import Database
from greenroom.memory.history import History, Turn
from greenroom.memory.long_term import KEPT, PENDING, LongTermMemory, index_name
from greenroom.memory.schema import memories
from greenroom.memory.store import EdgeStore
from greenroom.models.llm import Generation, Messages, Sampling
from tests.fakes.qdrant_server import FakeQdrant
from tests.helpers import RecordingReplier, message

KEYS = "I keep my spare keys in the blue teapot."
ASK_KEYS = "Where do I keep my spare keys?"
BIKE = "My bicycle is chained to the lamp post by the stage door."
ASK_BIKE = "Where did I leave my bicycle?"
FILLER = [
    "The lights flickered twice during the second act.",
    "Juno forgot her entrance in the ballroom scene.",
    "It rained so hard the roof sounded like applause.",
    "The new director wants the curtain call shorter.",
    "Someone left a sandwich on the prop table again.",
    "Otto says the doorman's cat had kittens.",
    "We sold out the Saturday matinee.",
    "The smoke machine set off the alarm in rehearsal.",
]


class NotedLLM:
    """A scripted model: answers every turn "Noted." and records the messages it was sent."""

    name, n_ctx, tokenizer_id, slots = "scripted", 4096, "scripted", 1

    def __init__(self) -> None:
        self.calls: list[Messages] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        self.calls.append(messages)
        gen.completion_tokens = 2
        yield "Noted."
        gen.finish_reason = "stop"


class Chat:
    """Persona turns with the scripted model and the app's long-term memory; commands through the
    app's dispatcher. A small history budget: about three turns stay in the prompt's history."""

    def __init__(self, app, **persona: Any) -> None:
        self.app, self.llm = app, NotedLLM()
        config = app.config.persona.model_copy(update={"history_budget": 40, **persona})
        self.engine = PersonaEngine(app.library, app.history, app.settings, self.llm, config, memory=app.long_term)

    async def say(self, text: str, user: str = "tom", chat: str = "c1", direct: bool = True) -> dict[str, Any]:
        """One turn; its trace (the prompt as sent, the memories recalled)."""
        self.app.settings.set(f"test:{chat}", "greeted:wren", "1")
        replier = RecordingReplier()
        await self.engine.reply(Context(message(text, user=user, chat=chat, direct=direct), replier, Level.USER))
        assert replier.messages[-1] == "Noted."
        return replier.traces[-1]

    async def tell(self, fact: str, user: str = "tom", chat: str = "c1", direct: bool = True) -> None:
        """The fact, then enough other talk to push it out of the history window."""
        await self.say(fact, user, chat, direct)
        for line in FILLER:
            trace = await self.say(line, user, chat, direct)
        assert all(fact not in m["content"] for m in trace["messages"])  # long gone from the history

    async def command(self, text: str, user: str = "tom", chat: str = "c1", direct: bool = True, admin=False) -> str:
        replier = RecordingReplier()
        sent = message(text, user=user, chat=chat, direct=direct, admin=admin)
        done = await self.app.dispatcher.submit(sent, replier)
        if done is not None:
            await done
        return replier.messages[-1]


def recalled(trace: dict[str, Any]) -> str:
    return "\n".join(m["text"] for m in trace["memories"])


def rows(app, conversation: str) -> list[Any]:
    with app.db.read() as conn:
        return conn.execute(select(memories).where(memories.c.conversation == conversation)).all()


# ----- recall ----------------------------------------------------------------------------------


async def test_a_fact_told_long_ago_comes_back_with_who_said_it_and_when(app):
    chat = Chat(app)
    await chat.tell(KEYS)
    trace = await chat.say(ASK_KEYS)
    *stable, final = trace["messages"]
    assert final["role"] == "user" and final["content"].endswith(ASK_KEYS)
    block = final["content"][final["content"].index(MEMORY_PREFIX) : -len(ASK_KEYS)]
    lines = block.splitlines()
    assert lines[0] == MEMORY_PREFIX.strip()
    teapot = next(i for i, line in enumerate(lines) if KEYS in line)
    assert lines[teapot].endswith(f"] Tom: {KEYS}") and lines[teapot + 1].endswith("] Wren: Noted.")
    day = lines[teapot][1:11]
    assert day[:2] == "20" and day[4] == day[7] == "-"  # [YYYY-MM-DD]
    assert final["content"].index("Classic scenes") < final["content"].index(MEMORY_PREFIX)  # scenes, memories, words
    assert all(KEYS not in m["content"] for m in stable)  # the system prompt and history do not have it
    assert KEYS in recalled(trace) and len(trace["memories"]) <= 3
    unrelated = await chat.say("Do you think it will snow for the opening night?")
    assert KEYS not in recalled(unrelated)  # only what is relevant comes back


async def test_haruhi2_keeps_chatharuhis_order_with_memories_after_the_scenes(app):
    chat = Chat(app, mode="haruhi2")
    await chat.tell(KEYS)
    messages = (await chat.say(ASK_KEYS))["messages"]
    assert messages[1]["content"].startswith("Classic scenes")
    assert f"] Tom:「{KEYS}」\n" in messages[1]["content"].split(MEMORY_PREFIX)[1]
    assert messages[-1]["content"] == f"Tom:「{ASK_KEYS}」"


async def test_a_chinese_fact_is_recalled_by_its_words(app):
    chat = Chat(app)
    await chat.tell("我把备用钥匙放在蓝色茶壶里了。", user="wang", chat="zh")
    trace = await chat.say("我的备用钥匙放在哪里？", user="wang", chat="zh")
    assert "我把备用钥匙放在蓝色茶壶里了。" in recalled(trace)


async def test_another_conversation_never_sees_it(app):
    chat = Chat(app)
    await chat.tell(KEYS, chat="c1")
    await chat.tell("My locker code is four seven one one.", chat="c2")  # c2 has memories of its own
    elsewhere = await chat.say(ASK_KEYS, chat="c2")
    assert all("teapot" not in m["content"] for m in elsewhere["messages"])
    assert "teapot" not in recalled(elsewhere)
    assert "teapot" in recalled(await chat.say(ASK_KEYS, chat="c1"))
    assert index_name("test:c1", "wren") != index_name("test:c2", "wren")


# ----- forgetting --------------------------------------------------------------------------------


async def test_forget_by_a_user_removes_only_their_own(app):
    chat = Chat(app)
    await chat.tell(BIKE, user="ann", chat="g", direct=False)
    await chat.tell(KEYS, user="tom", chat="g", direct=False)
    await chat.say("My locker code is four seven one one.", user="tom", chat="g", direct=False)  # still in the window
    toms = [r for r in rows(app, "test:g") if r.user_id == "test:tom" and r.state == KEPT]
    answer = await chat.command("/forget", user="tom", chat="g", direct=False)
    assert answer.startswith(f"Forgot {len(toms)} memories of what you said here")
    for line in FILLER:  # the locker code leaves the window now, after /forget
        await chat.say(line, user="ann", chat="g", direct=False)
    assert "teapot" not in recalled(await chat.say(ASK_KEYS, user="tom", chat="g", direct=False))
    assert "locker" not in recalled(await chat.say("What is my locker code?", user="tom", chat="g", direct=False))
    assert BIKE in recalled(await chat.say(ASK_BIKE, user="ann", chat="g", direct=False))
    left = rows(app, "test:g")
    assert all(r.user_text == r.reply == "" for r in left if r.user_id == "test:tom")  # the words are gone
    assert any(r.state == KEPT for r in left if r.user_id == "test:ann")


async def test_forget_all_needs_a_chat_admin_and_stays_in_that_chat(app):
    chat = Chat(app)
    for room in ("g1", "g2"):
        await chat.tell(KEYS, chat=room, direct=False)
    refused = await chat.command("/forget all", user="pat", chat="g1", direct=False)
    assert refused == "/forget all needs chat admin level in this chat; you are user."
    assert "teapot" in recalled(await chat.say(ASK_KEYS, chat="g1", direct=False))
    answer = await chat.command("/forget all", user="mod", chat="g1", direct=False, admin=True)
    assert answer.startswith("Forgot ") and " memories of this conversation" in answer
    assert "teapot" not in recalled(await chat.say(ASK_KEYS, chat="g1", direct=False))
    assert "teapot" in recalled(await chat.say(ASK_KEYS, chat="g2", direct=False))  # another chat: untouched


async def test_reset_clears_history_and_memory(app):
    chat = Chat(app)
    await chat.tell(KEYS)
    kept = sum(r.state == KEPT for r in rows(app, "test:c1"))
    answer = await chat.command("/reset")
    assert (
        answer == f"Forgot our conversation ({1 + len(FILLER)} turns) and {kept} memories of it. The character stays."
    )
    trace = await chat.say(ASK_KEYS)
    assert trace["memories"] == [] and trace["history_turns"] == 0
    assert rows(app, "test:c1") == []
    assert index_name("test:c1", "wren") not in app.store.names()  # its vectors are gone with it


# ----- keeping ------------------------------------------------------------------------------------


async def test_memories_survive_a_restart_and_are_written_once(open_app):
    first = open_app()
    await Chat(first).tell(KEYS)
    first.close()
    second = open_app()
    chat = Chat(second)
    assert KEYS in recalled(await chat.say(ASK_KEYS))
    for line in FILLER:
        await chat.say(line)
    stored = rows(second, "test:c1")
    assert len({r.turn_id for r in stored}) == len(stored) and all(r.state == KEPT for r in stored)
    second.close()
    index = second.store.open(index_name("test:c1", "wren"))
    assert index.count() == 2 * len(stored)  # the user's line and the reply of each remembered turn, once
    index.close()


@contextmanager
def qdrant_on_a_thread() -> Iterator[tuple[FakeQdrant, Any]]:
    """The fake Qdrant server in this process, and a way to run its coroutines (stop, start again)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeQdrant()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    run(server.start())
    try:
        yield server, run
    finally:
        run(server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
async def test_a_vector_store_that_is_down_costs_the_memories_never_the_turn(open_app, caplog):
    with qdrant_on_a_thread() as (server, run):
        app = open_app(f'[memory]\nqdrant_url = "http://127.0.0.1:{server.port}"\n')
        chat = Chat(app)
        await chat.tell(KEYS)
        run(server.stop())
        with caplog.at_level(logging.WARNING):
            trace = await chat.say(ASK_KEYS)  # answered ("Noted.", checked in say)
        assert trace["memories"] == [] and trace["stories"] == []
        said = caplog.text
        assert "memories of test:c1 not recalled (vector store" in said and "not memorized yet" in said
        assert any(r.state == PENDING for r in rows(app, "test:c1"))  # kept for later, not lost
        run(server.start())
        await chat.say("The understudy was brilliant tonight.")  # the pending turn is embedded now
        assert all(r.state == KEPT for r in rows(app, "test:c1"))
        assert KEYS in recalled(await chat.say(ASK_KEYS))


def test_the_memory_table_on_sqlite_and_postgresql(database_url, embedder, tmp_path):
    """Copying, embedding, recalling and forgetting with each database's own SQL; a second pass
    copies nothing again."""
    db = Database(database_url)
    history = History(db)
    for user, text in [("test:ann", BIKE), ("test:tom", KEYS), *[("test:ann", line) for line in FILLER[:4]]]:
        history.add("test:g", "wren", Turn(user, user[5:].title(), text, "Noted.", "Wren:「Noted.」"))
    memory = LongTermMemory(db, EdgeStore(tmp_path / "qdrant"), lambda: embedder)
    assert memory.memorize("test:g", "wren", keep=2) == 4  # all but the newest two turns
    assert memory.memorize("test:g", "wren", keep=2) == 0
    assert [m.speaker for m in memory.recall("test:g", "wren", ASK_KEYS, 3, 0.35)][:1] == ["Tom"]
    assert memory.recall("test:other", "wren", ASK_KEYS, 3, 0.35) == []
    assert memory.forget("test:g", "test:tom") == 1
    assert memory.recall("test:g", "wren", ASK_KEYS, 3, 0.35) == []
    assert [m.user_text for m in memory.recall("test:g", "wren", ASK_BIKE, 1, 0.35)] == [BIKE]
    history.clear("test:g")
    assert memory.forget("test:g") == 3
    with db.read() as conn:
        assert conn.execute(select(memories)).all() == []
    memory.close()
    db.close()


# ----- the prompt ---------------------------------------------------------------------------------


def test_memories_of_turns_the_history_holds_are_left_out_and_budgets_hold():
    def chars(text: str) -> int:
        return len(text)

    history = [PastTurn("Tom", f"line {i}", "ok", "Wren:「ok」", turn=i) for i in range(10, 13)]
    found = [
        Recalled(11, "Tom", "[2026-01-01] Tom: line 11\n[2026-01-01] Wren: ok", 40, 0.9),  # in the history
        Recalled(3, "Tom", "[2026-01-01] Tom: keys\n[2026-01-01] Wren: ok", 40, 0.8),
        Recalled(2, "Ann", "[2026-01-01] Ann: bike\n[2026-01-01] Wren: ok", 40, 0.7),
        Recalled(1, "Ann", "[2026-01-01] Ann: cat\n[2026-01-01] Wren: ok", 40, 0.6),
    ]
    budgets = Budgets(story=0, history=1000, context=100_000, reply=10, memory=200, memory_k=2)
    prompt = build_chat("sys", [], history, "Tom", "hi", budgets, chars, recalled=found)
    assert [m.turn for m in prompt.memories] == [3, 2]  # the best two not in the history
    assert prompt.messages[-1]["content"] == memory_block(prompt.memories) + "hi"
    assert prompt.messages[-1]["content"].index("Ann: bike") < prompt.messages[-1]["content"].index("Tom: keys")
    assert "\nAnn:" in prompt.stop  # a speaker of the memories is a speaker of the prompt
    tight = Budgets(story=0, history=1000, context=100_000, reply=10, memory=len(MEMORY_PREFIX) + 45, memory_k=3)
    assert len(build_chat("sys", [], history, "Tom", "hi", tight, chars, recalled=found).memories) == 1
    off = Budgets(story=0, history=1000, context=100_000, reply=10, memory=0, memory_k=3)
    assert build_chat("sys", [], history, "Tom", "hi", off, chars, recalled=found).memories == []
