"""The console adapter: chat with the bot in a terminal, or script it with --message and --json."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO

from greenroom.core.adapter import SentRef
from greenroom.core.config import ConsoleSection
from greenroom.core.dispatch import Dispatcher
from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.persona import PersonaEngine

PLATFORM = "console"


class ConsoleReplier:
    """Prints replies. Interactive: streams text as it grows. JSON: collects, then one object a reply."""

    max_len = 1_000_000
    placeholder_delay = 0.0

    def __init__(self, out: TextIO, json_mode: bool, stream: bool = True) -> None:
        self.out = out
        self.json_mode = json_mode
        self.edit_interval = 0.0 if stream and not json_mode else float("inf")
        self.sent: list[str] = []
        self.trace: dict[str, Any] | None = None

    async def send(self, text: str) -> SentRef:
        self.sent.append(text)
        if not self.json_mode:
            self.out.write(("\n" if len(self.sent) > 1 else "") + text)
            self.out.flush()
        return SentRef(str(len(self.sent) - 1))

    async def edit(self, ref: SentRef, text: str) -> None:
        index = int(ref.id)
        before, self.sent[index] = self.sent[index], text
        if self.json_mode:
            return
        if text.startswith(before) and index == len(self.sent) - 1:
            self.out.write(text[len(before) :])
        else:
            self.out.write("\n" + text)
        self.out.flush()

    @asynccontextmanager
    async def typing(self) -> AsyncIterator[None]:
        yield

    async def report(self, trace: dict[str, Any]) -> None:
        self.trace = trace

    def flush_message(self) -> None:
        """End the output for one incoming message."""
        if self.json_mode:
            if self.trace is not None:
                notices = [t for t in self.sent if t != self.trace["reply"]]
                record = {**self.trace, "notices": notices} if notices else self.trace
            else:
                record = {"reply": "\n".join(self.sent)}
            if self.sent or self.trace is not None:
                self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.sent:
            self.out.write("\n")
        self.out.flush()
        self.sent, self.trace = [], None


class Console:
    """One local user talking to the bot through the dispatcher."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        persona: PersonaEngine,
        settle: Callable[[], Awaitable[None]],
        settings: ConsoleSection,
        user: str | None,
        json_mode: bool = False,
        out: TextIO | None = None,
    ) -> None:
        """``settle`` waits for background work a message started (link checks) before the next prompt."""
        out = out or sys.stdout
        self.dispatcher = dispatcher
        self.persona = persona
        self.settle = settle
        self.author = Actor(PLATFORM, user or settings.user_id, user or "You")
        self.key = ConversationKey(PLATFORM, self.author.user_id)
        self.replier = ConsoleReplier(out, json_mode, settings.stream)
        self.out = out
        self._ids = itertools.count(1)

    async def say(self, text: str) -> None:
        """Send one message and wait until it has been answered."""
        message = Message(id=str(next(self._ids)), key=self.key, author=self.author, text=text, is_direct=True)
        done = await self.dispatcher.submit(message, self.replier)
        try:
            if done is not None:
                await done
            await self.settle()  # a link flag belongs before the next prompt
        finally:
            self.replier.flush_message()

    async def run_script(self, messages: list[str]) -> None:
        for text in messages:
            await self.say(text)

    async def run_interactive(self) -> None:
        """A prompt loop. Ctrl-C during a reply stops that reply (not saved); at the prompt it quits."""
        loop = asyncio.get_running_loop()
        quit_now = asyncio.Event()
        busy = False

        def interrupt() -> None:
            if busy and self.dispatcher.cancel(self.key):
                self.out.write("\n[interrupted: that reply was stopped and not saved]")
            else:
                quit_now.set()

        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            greeting = self.persona.greeting(self.key, self.persona.role_name(self.author))
            if greeting:
                self.out.write(f"{greeting}\n")
            self.out.write("(Type a message; /help lists commands; Ctrl-D or Ctrl-C quits.)\n")
            while (line := await _read_line(loop, "you> ", self.out, quit_now)) is not None:
                if line.strip():
                    busy = True
                    await self.say(line.strip())
                    busy = False
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            self.out.write("bye\n")
            self.out.flush()


async def _read_line(loop: asyncio.AbstractEventLoop, prompt: str, out: TextIO, stop: asyncio.Event) -> str | None:
    """Read a line from stdin without blocking the loop; None at end of input or on Ctrl-C."""
    out.write(prompt)
    out.flush()
    fd = sys.stdin.fileno()
    got: asyncio.Future[str] = loop.create_future()

    def readable() -> None:
        if not got.done():
            got.set_result(sys.stdin.readline())

    loop.add_reader(fd, readable)
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    waiting: list[asyncio.Future[Any]] = [got, stopped]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(fd)
        stopped.cancel()
    if not got.done():
        out.write("\n")
        return None
    return got.result() or None
