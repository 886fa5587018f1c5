"""The dispatcher: trigger policy, one ordered lane per conversation, routing to handlers, and the
one error path.

Messages of one conversation are handled strictly in order; different conversations run
concurrently. A lane holds at most ``lane_depth`` waiting messages: one more gets a "busy"
answer instead of being dropped silently. Processes sharing one database keep that order between
them too (`TurnOrder`): a message waits until no earlier message of its conversation (by the
platform's numbering) is still waiting or running on another process. A handler's `UserError` is
shown to the user as it is; any other exception is logged with its traceback and an error id, and the user sees the id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from greenroom.core.adapter import Replier
from greenroom.core.commands import Access, Context, Level
from greenroom.core.events import ConversationKey, Message
from greenroom.core.metrics import Metrics, message_kind
from greenroom.core.ratelimit import RateLimiter
from greenroom.errors import UserError

log = logging.getLogger(__name__)

BUSY = "I'm still working on earlier messages here; please send that again in a moment."
CLOSING = "I'm restarting; please send that again in a minute."
CUT_OFF = "I had to stop before finishing this because I'm restarting; please send it again in a minute."
DECLINED = "I can't take that from you here."
RATE_LIMITED = "You're sending messages faster than I can answer; please wait a moment."
FAILED = "Sorry, something went wrong on my side (error id {id})."

Handle = Callable[[Context], Awaitable[None]]


@dataclass(order=True)
class Route:
    """A handler with NoneBot-style priority (lower runs first) and block semantics."""

    priority: int
    name: str = field(compare=False)
    matches: Callable[[Context], bool] = field(compare=False)
    handle: Handle = field(compare=False)
    block: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class Observer:
    """Sees every admitted message, triggered or not (link checks); must not block."""

    name: str
    see: Callable[[Message, Replier], None]


class TurnOrder(Protocol):
    """A conversation's messages in the platform's order across processes (`memory/turn_order.py`)."""

    stale: float  # seconds a message's process may go without renewing it

    def join(self, conversation: str, seq: int) -> None: ...

    def is_turn(self, conversation: str, seq: int) -> bool: ...

    def renew(self, conversation: str, seq: int) -> None: ...

    def finish(self, conversation: str, seq: int) -> None: ...


@dataclass
class _Item:
    message: Message
    replier: Replier
    done: asyncio.Future
    ctx: Context | None = None  # work queued by a handler (`enqueue`): this context, this handler
    handle: Handle | None = None
    seq: int | None = None  # its place in the conversation across processes (`TurnOrder`)


class Dispatcher:
    """Accepts neutral messages from adapters and runs them through the routes."""

    def __init__(
        self,
        access: Access,
        lane_depth: int,
        chat_mode: Callable[[ConversationKey], str],
        rate: RateLimiter | None = None,
        metrics: Metrics | None = None,
        order: TurnOrder | None = None,
    ) -> None:
        self.access = access
        self.lane_depth = lane_depth
        self.chat_mode = chat_mode
        self.rate = rate or RateLimiter(0, 1)
        self.metrics = metrics or Metrics()
        self.metrics.watch_queue("messages", lambda: self.queued)
        self.order = order
        self._placing: weakref.WeakValueDictionary[ConversationKey, asyncio.Lock] = weakref.WeakValueDictionary()
        self.routes: list[Route] = []
        self.observers: list[Observer] = []
        self._lanes: dict[ConversationKey, asyncio.Queue[_Item]] = {}
        self._workers: dict[ConversationKey, asyncio.Task] = {}
        self._running: dict[ConversationKey, Context] = {}
        self._renewing: dict[str, asyncio.Task] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    def add(self, handler: Route | Observer) -> None:
        """A route (by priority) or an observer, as a handler plugin gives them."""
        if isinstance(handler, Observer):
            self.observers.append(handler)
        else:
            self.routes.append(handler)
            self.routes.sort()

    def triggered(self, message: Message) -> bool:
        """Direct messages always; in groups mentions and replies, or everything in `all` mode."""
        if message.command is not None or message.is_direct:
            return True
        mode = self.chat_mode(message.key)
        if mode == "off":
            return False
        return mode == "all" or message.mentions_bot or message.is_reply_to_bot

    @property
    def queued(self) -> int:
        return sum(q.qsize() for q in self._lanes.values())

    async def submit(
        self, message: Message, replier: Replier, on_decline: Callable[[str], Awaitable[None]] | None = None
    ) -> asyncio.Future | None:
        """Queue a message in its conversation's lane; the future resolves once it is handled.

        Returns None when the message is not for the bot or was answered "busy". A message declined
        without an answer (a denied sender, a repeated rate-limit refusal) calls ``on_decline`` with
        a short reason, for platforms that must answer every command (Discord's slash commands).
        """
        if message.author.is_bot:
            return None
        try:
            admitted = self.access.admitted(message)
            if admitted and not self.closing:
                for observer in self.observers:
                    observer.see(message, replier)
            triggered = admitted and self.triggered(message)
        except UserError as e:  # the database is down: say so to whoever clearly spoke to the bot
            if message.command is not None or message.is_direct or message.mentions_bot or message.is_reply_to_bot:
                await replier.send(str(e))
            return None
        if not admitted:
            if on_decline is not None:
                await on_decline(DECLINED)
            return None
        if not triggered:
            return None
        if self.closing:
            await replier.send(CLOSING)
            return None
        self.metrics.messages.labels(message.key.platform, message_kind(message)).inc()
        wait = None if self.access.level(message.author) >= Level.ADMIN else self.rate.check(message.author.ref)
        if wait is not None:
            self.metrics.rate_limited.inc()
            if wait:
                await replier.send(
                    f"You're sending messages faster than I can answer; please wait {wait:.0f} s before the next one."
                )
            elif on_decline is not None:
                await on_decline(RATE_LIMITED)
            return None
        item = _Item(message, replier, asyncio.get_running_loop().create_future())
        try:
            placed = await self._place(item, ordered=self.order is not None)
        except UserError as e:  # the shared database is down: say so, keep serving
            await replier.send(str(e))
            return None
        if not placed:
            await replier.send(BUSY)
            return None
        return item.done

    async def enqueue(self, ctx: Context, handle: Handle) -> asyncio.Future | None:
        """Run ``handle(ctx)`` in the conversation's lane, after what is already waiting there
        (a character's comment on a clip described in the background)."""
        item = _Item(ctx.message, ctx.replier, asyncio.get_running_loop().create_future(), ctx, handle)
        if self.closing or not await self._place(item, ordered=False):
            log.info("queued work for %s dropped: %s", ctx.message.key, "closing" if self.closing else "lane full")
            return None
        return item.done

    async def _place(self, item: _Item, ordered: bool) -> bool:
        """Put an item in its conversation's lane (starting the lane's worker), joining the shared
        order when asked; False when the lane is full."""
        key = item.message.key
        lock = self._placing.get(key) or self._placing.setdefault(key, asyncio.Lock())
        async with lock:
            lane = self._lanes.get(key)
            if lane is not None and lane.full():
                return False
            if ordered and self.order is not None and item.message.sequence is not None:
                await asyncio.to_thread(self.order.join, str(key), item.message.sequence)
                item.seq = item.message.sequence
            # from here on nothing awaits: the lane and its worker cannot change under us
            lane = self._lanes.setdefault(key, asyncio.Queue(self.lane_depth))
            lane.put_nowait(item)  # only _place puts, under this lock: there is room
            if key not in self._workers:
                self._idle.clear()
                self._workers[key] = asyncio.create_task(self._work(key, lane))
        return True

    async def idle(self) -> None:
        """Wait until every queued message has been handled."""
        await self._idle.wait()

    async def _work(self, key: ConversationKey, lane: asyncio.Queue[_Item]) -> None:
        try:
            while not lane.empty():
                item = lane.get_nowait()
                try:
                    await self._handle(item)
                finally:
                    if not item.done.done():
                        item.done.set_result(None)
        finally:  # cancelled: what was still waiting in this lane is dropped, its senders released
            dropped = self._drain(key)
            self._workers.pop(key, None)
            self._lanes.pop(key, None)
            if not self._workers:
                self._idle.set()
            await self._finish(dropped)
            for waiting in dropped:
                waiting.done.set_result(None)

    def _drain(self, key: ConversationKey) -> list[_Item]:
        """Take out the messages still waiting in a conversation's lane."""
        lane = self._lanes.get(key)
        return [lane.get_nowait() for _ in range(lane.qsize())] if lane else []

    def cancel(self, key: ConversationKey) -> bool:
        """Stop the turn running in a conversation (a user's Ctrl-C); False if none runs."""
        worker = self._workers.get(key)
        if worker is None or worker.done():
            return False
        worker.cancel()
        return True

    async def _handle(self, item: _Item) -> None:
        ctx = item.ctx or Context(item.message, item.replier, self.access.level(item.message.author))
        self._running[item.message.key] = ctx
        try:
            if item.seq is not None:
                try:
                    await self._wait_turn(str(item.message.key), item.seq)
                except UserError as e:
                    await self._tell(ctx, str(e))
                    return
            if item.handle is not None:
                await self._run("queued work", item.handle, ctx)
                return
            for route in self.routes:
                if route.matches(ctx):
                    await self._run(route.name, route.handle, ctx)
                    if route.block:
                        break
        finally:
            self._running.pop(item.message.key, None)
            await self._finish([item])

    async def _wait_turn(self, conversation: str, seq: int) -> None:
        """Until earlier messages of the conversation on other processes are done; then keeps
        renewing this one in the background while its turn runs."""
        assert self.order is not None
        order, pause = self.order, 0.01
        while not await asyncio.to_thread(order.is_turn, conversation, seq):
            await asyncio.sleep(pause)  # polling the shared database, backing off to 0.2 s
            pause = min(2 * pause, 0.2)
        renewing = asyncio.create_task(self._renew(conversation, seq, order.stale / 4))
        self._renewing[conversation] = renewing

    async def _renew(self, conversation: str, seq: int, every: float) -> None:
        assert self.order is not None
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.order.renew, conversation, seq)
            except UserError as e:
                log.warning("could not renew %s's turn: %s", conversation, e)

    async def _finish(self, items: list[_Item]) -> None:
        """Take these items out of the shared order (handled, cut off, or dropped while waiting)."""
        for item in items:
            if item.seq is None or self.order is None:
                continue
            conversation = str(item.message.key)
            renewing = self._renewing.pop(conversation, None)
            if renewing is not None:
                renewing.cancel()
            try:
                await asyncio.shield(asyncio.to_thread(self.order.finish, conversation, item.seq))
            except UserError as e:
                log.warning(
                    "could not pass on %s's turn (the next waits %.0f s): %s", conversation, self.order.stale, e
                )
            item.seq = None

    async def _run(self, name: str, handle: Handle, ctx: Context) -> None:
        """The one error path: a `UserError` is shown as it is; anything else gets an error id."""
        try:
            await handle(ctx)
        except asyncio.CancelledError:
            raise
        except UserError as e:
            log.log(e.log_level, "%s in %s: %s", name, ctx.message.key, getattr(e, "detail", e))
            await self._tell(ctx, str(e))
        except Exception:
            error_id = secrets.token_hex(4)
            self.metrics.errors.labels(name).inc()
            log.exception("handler %s failed (error id %s) in %s", name, error_id, ctx.message.key)
            await self._tell(ctx, FAILED.format(id=error_id))

    async def _tell(self, ctx: Context, text: str) -> None:
        """Show the user what went wrong; when even that fails (the platform is down), log it."""
        try:
            await ctx.fail(text)
        except Exception as e:
            log.warning("could not tell %s what went wrong: %s", ctx.message.key, e)

    async def close(self, deadline: float) -> None:
        """Stop taking messages, let running turns finish within ``deadline`` seconds, then cancel
        the rest and tell each of their senders."""
        self.closing = True
        workers = dict(self._workers)
        if not workers:
            return
        _, pending = await asyncio.wait(workers.values(), timeout=deadline)
        cut_off = [key for key, task in workers.items() if task in pending]
        running = [self._running[key] for key in cut_off if key in self._running]
        waiting = [item for key in cut_off for item in self._drain(key)]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        notices: list[Awaitable[object]] = [ctx.fail(CUT_OFF) for ctx in running]
        notices += [item.replier.send(CUT_OFF) for item in waiting if item.handle is None]  # senders, not queued work
        for result in await asyncio.gather(*notices, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not tell a user their turn was cut off: %s", result)
        await self._finish(waiting)
        for item in waiting:
            item.done.set_result(None)
