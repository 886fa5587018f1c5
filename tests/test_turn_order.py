"""One conversation's messages in the platform's order across processes sharing a database (two
dispatchers here, each with its own lanes and holder name, as two processes would have), on SQLite
and on PostgreSQL."""

import asyncio
import dataclasses

from greenroom.core.commands import Access, Context
from greenroom.core.dispatch import CUT_OFF, Dispatcher, Route
from greenroom.memory.db import Database
from greenroom.memory.turn_order import SharedTurnOrder
from tests.helpers import RecordingReplier, message


class Watched(SharedTurnOrder):
    """The shared order, telling the test when a message was found not yet due."""

    def __init__(self, db: Database, holder: str, **kw) -> None:
        super().__init__(db, holder=holder, **kw)
        self.refused: list[int] = []

    def is_turn(self, conversation: str, seq: int) -> bool:
        due = super().is_turn(conversation, seq)
        if not due:
            self.refused.append(seq)
        return due


def process(order: SharedTurnOrder, seen: list[str], gate: asyncio.Event) -> Dispatcher:
    d = Dispatcher(Access(frozenset(), frozenset()), 8, chat_mode=lambda key: "all", order=order)

    async def record(ctx: Context) -> None:
        if ctx.message.text == "first":
            await gate.wait()
        seen.append(ctx.message.text)

    d.add(Route(1, "record", lambda ctx: True, record))
    return d


def numbered(text: str, seq: int, chat: str = "g"):
    return dataclasses.replace(message(text, chat=chat), id=str(seq))


async def until(condition) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 30)


async def test_the_next_message_on_another_process_waits_for_the_first(database_url):
    db = Database(database_url)
    seen: list[str] = []
    gate = asyncio.Event()
    one = process(Watched(db, "one", window=0), seen, gate)
    other_order = Watched(db, "two", window=0)
    two = process(other_order, seen, gate)
    first = await one.submit(numbered("first", 1), RecordingReplier())
    second = await two.submit(numbered("second", 2), RecordingReplier())
    third = await one.submit(numbered("third", 3), RecordingReplier())
    await until(lambda: other_order.refused)  # the second process asked, and was told to wait
    assert seen == []
    gate.set()
    await asyncio.gather(first, second, third)
    assert seen == ["first", "second", "third"]
    await (await two.submit(numbered("elsewhere", 4, chat="h"), RecordingReplier()))  # other chats do not wait
    assert seen[-1] == "elsewhere"


async def test_an_earlier_message_that_arrives_a_moment_later_still_goes_first(database_url):
    db = Database(database_url)
    now = [1000.0]
    seen: list[str] = []
    late = Watched(db, "two", clock=lambda: now[0])
    two = process(late, seen, asyncio.Event())
    second = await two.submit(numbered("second", 2), RecordingReplier())
    await until(lambda: late.refused)  # waiting out the window for earlier messages
    one = process(SharedTurnOrder(db, holder="one", clock=lambda: now[0]), seen, asyncio.Event())
    now[0] += 0.1
    first = await one.submit(numbered("earlier", 1), RecordingReplier())
    now[0] += 1
    await asyncio.gather(first, second)
    assert seen == ["earlier", "second"]


async def test_a_turn_whose_process_died_holds_the_conversation_only_until_it_goes_stale(database_url):
    db = Database(database_url)
    now = [1000.0]
    SharedTurnOrder(db, holder="killed", clock=lambda: now[0]).join("test:g", 1)  # then the process died
    seen: list[str] = []
    order = Watched(db, "alive", stale_seconds=60, window=0, clock=lambda: now[0])
    done = await process(order, seen, asyncio.Event()).submit(numbered("after", 2), RecordingReplier())
    await until(lambda: order.refused)
    assert seen == []
    now[0] += 61
    await done
    assert seen == ["after"]


async def test_messages_cut_off_on_shutdown_hold_up_nobody(database_url):
    db = Database(database_url)
    seen: list[str] = []
    gate = asyncio.Event()
    one = process(SharedTurnOrder(db, holder="one", window=0), seen, gate)
    replier = RecordingReplier()
    await one.submit(numbered("first", 1), replier)
    await one.submit(numbered("waiting", 2), replier)
    await one.close(deadline=0)
    assert replier.messages.count(CUT_OFF) == 2
    two = process(SharedTurnOrder(db, holder="two", window=0, stale_seconds=3600), seen, gate)
    await asyncio.wait_for(await two.submit(numbered("next", 3), RecordingReplier()), 30)
    assert seen == ["next"]  # served at once: nothing was left holding the conversation
