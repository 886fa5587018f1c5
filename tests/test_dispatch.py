"""The dispatcher: order within a conversation, concurrency across, busy answers, triggers, errors."""

import asyncio

from greenroom.core.commands import Access, CommandRegistry, CommandSet, Context, Level
from greenroom.core.dispatch import BUSY, CLOSING, CUT_OFF, RATE_LIMITED, Dispatcher, Route
from greenroom.core.ratelimit import RateLimiter
from greenroom.memory.characters import CharacterError
from tests.helpers import RecordingReplier, message


def make(lane_depth: int = 8, mode: str = "mention") -> Dispatcher:
    return Dispatcher(
        access=Access(frozenset({"test:boss"}), frozenset({"test:helper"})),
        lane_depth=lane_depth,
        chat_mode=lambda key: mode,
    )


async def test_messages_in_one_conversation_are_handled_in_order():
    d = make()
    seen: list[str] = []
    gate = asyncio.Event()

    async def first_waits(ctx: Context) -> None:
        if ctx.message.text == "first":
            await gate.wait()  # held until the later messages are queued behind it
        seen.append(ctx.message.text)

    d.add(Route(1, "record", lambda ctx: True, first_waits))
    replier = RecordingReplier()
    futures = [await d.submit(message(t), replier) for t in ("first", "second", "third")]
    gate.set()
    await asyncio.gather(*futures)
    assert seen == ["first", "second", "third"]


async def test_conversations_run_concurrently():
    d = make()
    started: list[str] = []
    release = asyncio.Event()

    async def wait_for_release(ctx: Context) -> None:
        started.append(ctx.message.key.chat_id)
        await release.wait()

    d.add(Route(1, "block", lambda ctx: True, wait_for_release))
    replier = RecordingReplier()
    futures = [await d.submit(message("hi", chat=c), replier) for c in ("a", "b")]
    while len(started) < 2:  # both chats are inside their handler at the same time
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*futures)
    assert sorted(started) == ["a", "b"]


async def test_full_lane_answers_busy_instead_of_dropping_silently():
    d = make(lane_depth=1)
    release = asyncio.Event()

    async def hold(ctx: Context) -> None:
        await release.wait()

    d.add(Route(1, "hold", lambda ctx: True, hold))
    replier = RecordingReplier()
    first = await d.submit(message("one"), replier)
    await asyncio.sleep(0)  # the worker takes "one"; the lane is empty again
    second = await d.submit(message("two"), replier)
    third = await d.submit(message("three"), replier)
    assert third is None and replier.messages == [BUSY]
    release.set()
    await asyncio.gather(first, second)


async def test_group_messages_need_a_mention_unless_mode_all():
    handled: list[str] = []

    async def record(ctx: Context) -> None:
        handled.append(ctx.message.text)

    for mode, expected in (("mention", ["mentioned"]), ("all", ["plain", "mentioned"]), ("off", [])):
        handled.clear()
        d = make(mode=mode)
        d.add(Route(1, "record", lambda ctx: True, record))
        for text, mention in (("plain", False), ("mentioned", True)):
            done = await d.submit(message(text, direct=False, mention=mention), RecordingReplier())
            if done is not None:
                await done
        assert handled == expected, mode


async def test_handler_error_gives_an_error_id_and_the_lane_keeps_serving():
    d = make()

    async def explode_once(ctx: Context) -> None:
        if ctx.message.text == "boom":
            raise RuntimeError("model fell over")
        await ctx.replier.send("fine")

    d.add(Route(1, "explode", lambda ctx: True, explode_once))
    replier = RecordingReplier()
    await asyncio.gather(*[await d.submit(message(t), replier) for t in ("boom", "again")])
    assert replier.messages[0].startswith("Sorry, something went wrong") and "error id" in replier.messages[0]
    assert replier.messages[1] == "fine"


async def test_commands_refuse_with_the_level_needed():
    commands = CommandSet()

    @commands.add("secret wipe", Level.OWNER, "/secret wipe", "wipe")
    async def wipe(ctx, args):
        return "wiped"

    registry = CommandRegistry()
    registry.include(commands)

    d = make()
    for user, admin, expected in (
        ("pat", False, "/secret wipe needs owner level (bot-wide); you are user."),
        ("helper", False, "/secret wipe needs owner level (bot-wide); you are bot admin."),
        ("mod", True, "/secret wipe needs owner level (bot-wide); you are chat admin here."),
        ("boss", False, "wiped"),
    ):
        m = message("/secret wipe", user=user, admin=admin)
        ctx = Context(m, RecordingReplier(), d.access.level(m.author))
        assert await registry.run(ctx, *m.command) == expected


async def test_cancel_stops_a_running_turn_and_releases_waiting_senders():
    d = make()
    entered = asyncio.Event()

    async def forever(ctx: Context) -> None:
        entered.set()
        await asyncio.Event().wait()

    d.add(Route(1, "forever", lambda ctx: True, forever))
    first = await d.submit(message("a"), RecordingReplier())
    second = await d.submit(message("b"), RecordingReplier())
    await entered.wait()
    assert d.cancel(message("x").key)
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert d.queued == 0


async def test_an_error_mid_reply_replaces_the_placeholder_and_the_id_is_logged(caplog):
    d = make()

    async def half_then_fail(ctx: Context) -> None:
        await ctx.stream().update("Well, the thing about")
        raise RuntimeError("model fell over")

    d.add(Route(1, "half", lambda ctx: True, half_then_fail))
    replier = RecordingReplier()
    await (await d.submit(message("hi"), replier))
    assert [kind for kind, _ in replier.events] == ["send", "edit"]
    error_id = replier.messages[0].split("error id ")[1].rstrip(").")
    assert replier.messages == [f"Sorry, something went wrong on my side (error id {error_id})."]
    assert error_id in caplog.text and "model fell over" in caplog.text


async def test_fast_senders_get_one_cooldown_notice_and_admins_are_not_limited():
    now = [0.0]
    d = Dispatcher(
        access=Access(frozenset(), frozenset({"test:helper"})),
        lane_depth=8,
        chat_mode=lambda key: "mention",
        rate=RateLimiter(per_minute=6, burst=2, clock=lambda: now[0]),
    )
    handled: list[str] = []

    async def record(ctx: Context) -> None:
        handled.append(ctx.message.text)

    d.add(Route(1, "record", lambda ctx: True, record))
    replier = RecordingReplier()
    for i in range(4):
        await d.submit(message(f"m{i}"), replier)
    for i in range(4):
        await d.submit(message(f"admin{i}", user="helper"), replier)
    now[0] = 10.0  # one token back after 10 s at 6 per minute
    await d.submit(message("later"), replier)
    await d.idle()
    assert handled == ["m0", "m1", "admin0", "admin1", "admin2", "admin3", "later"]
    assert replier.messages == [
        "You're sending messages faster than I can answer; please wait 10 s before the next one."
    ]


async def test_messages_declined_without_an_answer_tell_the_adapter_why():
    now = [0.0]
    d = Dispatcher(
        access=Access(frozenset(), frozenset()),
        lane_depth=8,
        chat_mode=lambda key: "mention",
        rate=RateLimiter(per_minute=6, burst=1, clock=lambda: now[0]),
    )
    reasons: list[str] = []

    async def decline(reason: str) -> None:
        reasons.append(reason)

    replier = RecordingReplier()
    for text in ("/status", "/status", "/status"):  # allowed, then a cooldown notice, then silence
        await d.submit(message(text), replier, on_decline=decline)
    assert len(replier.messages) == 1 and reasons == [RATE_LIMITED]


async def test_user_errors_are_shown_and_other_errors_get_an_id(caplog):
    d = make()

    async def refuse(ctx: Context) -> None:
        raise CharacterError("no character named 'kit'")

    d.add(Route(1, "refuse", lambda ctx: ctx.message.text == "kit", refuse))
    replier = RecordingReplier()
    await (await d.submit(message("kit"), replier))
    assert replier.messages == ["no character named 'kit'"]
    assert not any(r.exc_info for r in caplog.records)  # expected: no traceback in the log


async def test_close_tells_senders_whose_turns_were_cut_off():
    d = make()
    started = asyncio.Event()

    async def forever(ctx: Context) -> None:
        await ctx.stream().update("Let me think")
        started.set()
        await asyncio.Event().wait()

    d.add(Route(1, "forever", lambda ctx: True, forever))
    running, waiting = RecordingReplier(), RecordingReplier()
    await d.submit(message("first"), running)
    queued = await d.submit(message("second"), waiting)
    await started.wait()
    await d.close(deadline=0.05)
    await queued
    assert running.messages == [CUT_OFF] and waiting.messages == [CUT_OFF]
    assert await d.submit(message("after"), waiting) is None and waiting.messages[-1] == CLOSING


async def test_a_platform_that_cannot_take_the_error_message_does_not_stop_the_conversation():
    d = make()
    seen: list[str] = []

    class Unreachable(RecordingReplier):
        async def send(self, text: str):
            raise ConnectionError("the platform timed out")

    async def fails_first(ctx: Context) -> None:
        if ctx.message.text == "first":
            raise RuntimeError("boom")
        seen.append(ctx.message.text)

    d.add(Route(1, "record", lambda ctx: True, fails_first))
    first = await d.submit(message("first"), Unreachable())
    second = await d.submit(message("second"), RecordingReplier())
    await asyncio.gather(first, second)
    assert seen == ["second"]
