"""The dispatcher: trigger policy, one ordered lane per conversation, routing to handlers.

Messages of one conversation are handled strictly in order; different conversations run
concurrently. A lane holds at most ``lane_depth`` waiting messages: one more gets a "busy"
answer instead of being dropped silently. Model calls share a global semaphore
(``model_gate``) so a burst of chats cannot start more generations than there are slots.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from core.commands import Access, Context, Level
from core.events import ConversationKey, Message
from core.metrics import Metrics, message_kind
from core.ratelimit import RateLimiter
from core.reply import Replier

if TYPE_CHECKING:
    from core.app import Greenroom

log = logging.getLogger(__name__)

BUSY = "I'm still working on earlier messages here; please send that again in a moment."
CLOSING = "I'm restarting; please send that again in a minute."
CUT_OFF = "I had to stop before finishing this because I'm restarting; please send it again in a minute."


@dataclass(order=True)
class Route:
    """A handler with NoneBot-style priority (lower runs first) and block semantics."""

    priority: int
    name: str = field(compare=False)
    matches: Callable[[Context], bool] = field(compare=False)
    handle: Callable[[Context], Awaitable[None]] = field(compare=False)
    block: bool = field(default=True, compare=False)


@dataclass
class _Item:
    message: Message
    replier: Replier
    done: asyncio.Future


class Dispatcher:
    """Accepts neutral messages from adapters and runs them through the routes."""

    def __init__(self, app: "Greenroom", access: Access, lane_depth: int, model_slots: int,
                 chat_mode: Callable[[ConversationKey], str], rate: RateLimiter | None = None,
                 metrics: Metrics | None = None) -> None:
        self.app = app
        self.access = access
        self.lane_depth = lane_depth
        self.model_gate = asyncio.Semaphore(model_slots)
        self.chat_mode = chat_mode
        self.rate = rate or RateLimiter(0, 1)
        self.metrics = metrics or Metrics()
        self.metrics.watch_queue("messages", lambda: self.queued)
        self.routes: list[Route] = []
        self.observers: list[Callable[[Message, Replier], None]] = []  # see every admitted message, triggered or not
        self._lanes: dict[ConversationKey, asyncio.Queue[_Item]] = {}
        self._workers: dict[ConversationKey, asyncio.Task] = {}
        self._running: dict[ConversationKey, Context] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    def add_route(self, route: Route) -> None:
        self.routes.append(route)
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

    async def submit(self, message: Message, replier: Replier) -> asyncio.Future | None:
        """Queue a message in its conversation's lane; the future resolves once it is handled.

        Returns None when the message is not for the bot or was answered "busy".
        """
        if message.author.is_bot or not self.access.admitted(message):
            return None
        if not self.closing:
            for observe in self.observers:
                observe(message, replier)
        if not self.triggered(message):
            return None
        if self.closing:
            await replier.send(CLOSING)
            return None
        self.metrics.messages.labels(message.key.platform, message_kind(message)).inc()
        wait = None if self.access.level(message.author) >= Level.ADMIN else self.rate.check(message.author.ref)
        if wait is not None:
            self.metrics.rate_limited.inc()
            if wait:
                await replier.send(f"You're sending messages faster than I can answer; "
                                   f"please wait {wait:.0f} s before the next one.")
            return None
        lane = self._lanes.setdefault(message.key, asyncio.Queue(self.lane_depth))
        done = asyncio.get_running_loop().create_future()
        try:
            lane.put_nowait(_Item(message, replier, done))
        except asyncio.QueueFull:
            await replier.send(BUSY)
            return None
        if message.key not in self._workers:
            self._idle.clear()
            self._workers[message.key] = asyncio.create_task(self._work(message.key, lane))
        return done

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
            self._workers.pop(key, None)
            for waiting in self._drain(key):
                waiting.done.set_result(None)
            self._lanes.pop(key, None)
            if not self._workers:
                self._idle.set()

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
        ctx = Context(item.message, item.replier, self.access.level(item.message.author), self.app)
        self._running[item.message.key] = ctx
        try:
            for route in self.routes:
                if not route.matches(ctx):
                    continue
                try:
                    await route.handle(ctx)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    error_id = secrets.token_hex(4)
                    self.metrics.errors.labels(route.name).inc()
                    log.exception("handler %s failed (error id %s) in %s", route.name, error_id, item.message.key)
                    await ctx.fail(f"Sorry, something went wrong on my side (error id {error_id}).")
                if route.block:
                    break
        finally:
            self._running.pop(item.message.key, None)

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
        notices = [ctx.fail(CUT_OFF) for ctx in running] + [item.replier.send(CUT_OFF) for item in waiting]
        for result in await asyncio.gather(*notices, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not tell a user their turn was cut off: %s", result)
        for item in waiting:
            item.done.set_result(None)
