"""What the chaos run's service checks share: the fake Telegram API noting the id of each message it
is sent, a transcript of what every chat saw (texts after their last edit), the bot as a separate
process (`tests/bench/chaos_bot.py`) with its health port, memory figures and signals, and users who
send one message at a time and wait for what comes back."""

from __future__ import annotations

import asyncio
import html
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from greenroom.core.persona import NOT_STORED
from tests.bench.chaos_stub import is_answer, tag_of
from tests.fakes.telegram_api import FakeTelegram
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
GREETING = tomllib.loads((ROOT / "memory" / "demo" / "wren" / "character.toml").read_text())["greeting"]
MENTION = [{"type": "mention", "offset": 0, "length": 9}]  # "@wren_bot"


class ChaosTelegram(FakeTelegram):
    """The fake Bot API; a sent message's call also notes the id it was given (``sent_id``), so its
    later edits can be followed."""

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        params["sent_id"] = next(self._message_ids)
        return await self._sent_message({**params, "message_id": params["sent_id"]})


@dataclass
class Sent:
    """One message the bot sent: where, in answer to which message (groups), its text then and now."""

    chat: int
    id: int
    reply_to: int | None
    first: str
    final: str
    at: int  # its position among the fake's calls


@dataclass
class Push:
    """One message a user sent: the chat, its Telegram id, its tag, and its position among the calls."""

    chat: int
    message_id: int
    tag: str
    at: int


class Transcript:
    """What each chat saw, read from the fake's calls as they arrive (``update`` reads the new ones)."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.sent: dict[int, Sent] = {}
        self.by_chat: dict[int, list[Sent]] = defaultdict(list)
        self.pushes: list[Push] = []
        self.by_message: dict[int, Push] = {}
        self._read = 0

    def update(self) -> None:
        calls = self.fake.calls
        while self._read < len(calls):
            call = calls[self._read]
            if call.method == "sendMessage":
                reply = call.params.get("reply_parameters")
                sent = Sent(
                    int(call.params["chat_id"]),
                    int(call.params["sent_id"]),
                    int(reply["message_id"]) if isinstance(reply, dict) else None,
                    text := html.unescape(str(call.params.get("text", ""))),
                    text,
                    self._read,
                )
                self.sent[sent.id] = sent
                self.by_chat[sent.chat].append(sent)
            elif call.method == "editMessageText" and int(call.params.get("message_id", 0)) in self.sent:
                self.sent[int(call.params["message_id"])].final = html.unescape(str(call.params.get("text", "")))
            self._read += 1

    async def push(self, chat: int, user: int, text: str, group: bool = False) -> Push:
        """A user's message to the bot (in a group, addressed to it by a mention)."""
        if group:
            message = self.fake.message(
                f"@wren_bot {text}", chat_id=chat, user_id=user, chat_type="group", entities=MENTION
            )
        else:
            message = self.fake.message(text, chat_id=chat, user_id=user)
        return await self.push_raw(message, tag_of(text) or "")

    async def push_raw(self, message: dict[str, Any], tag: str) -> Push:
        """A message built by the caller (a clip, say), known by ``tag``."""
        push = Push(int(message["chat"]["id"]), message["message_id"], tag, len(self.fake.calls))
        self.pushes.append(push)
        self.by_message[push.message_id] = push
        await self.fake.push(message)
        return push

    def after(self, push: Push) -> list[Sent]:
        """What the bot sent in the push's chat after it, up to the chat's next push (one message at a
        time per chat: these are its answers)."""
        later = [p.at for p in self.pushes if p.chat == push.chat and p.at > push.at]
        end = min(later, default=1 << 62)
        self.update()
        return [s for s in self.by_chat[push.chat] if push.at <= s.at < end]

    async def settled(self, push: Push, timeout: float) -> Sent | None:
        """Wait until the bot has said something final about ``push``: its complete answer, or any
        other text that is not the greeting or a part of the answer still streaming. None on timeout."""
        found = await self.wait(lambda: [s for s in self.after(push) if not _passing(s.final, push.tag)], timeout)
        return found[0] if found else None

    async def wait(self, found: Callable[[], list[Sent]], timeout: float) -> list[Sent]:
        """Wait until ``found()`` lists something, looking again at each call the fake records; [] on timeout."""

        async def arrived() -> list[Sent]:
            async with self.fake.changed:
                await self.fake.changed.wait_for(lambda: bool(found()))
            return found()

        try:
            return await asyncio.wait_for(arrived(), timeout)
        except TimeoutError:
            return []


def _passing(text: str, tag: str) -> bool:
    """The greeting, or an answer still streaming."""
    return text == GREETING or (text.startswith(f"ok #{tag}") and not is_answer(text, tag))


@dataclass
class Outcomes:
    """How each message ended, by kind, from the texts the chats show at the end."""

    answered: list[str] = field(default_factory=list)
    told: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # text -> tags
    silent: list[str] = field(default_factory=list)
    answer_replaced: list[str] = field(default_factory=list)  # shown complete, then edited into an error
    not_stored: list[str] = field(default_factory=list)  # answered, and told it could not be stored


def outcomes(transcript: Transcript, pushes: list[Push], answers: Callable[[str, str], bool] = is_answer) -> Outcomes:
    """Classify one-at-a-time exchanges by what the chat shows at the end: answered (``answers(text,
    tag)``), told something else (by text), or nothing at all."""
    out = Outcomes()
    for push in pushes:
        shown = [s for s in transcript.after(push) if s.final != GREETING]
        if any(answers(s.final, push.tag) for s in shown):
            out.answered.append(push.tag)
            if any(s.final == NOT_STORED for s in shown):
                out.not_stored.append(push.tag)
            continue
        if any(answers(s.first, push.tag) for s in shown):
            out.answer_replaced.append(push.tag)
        if shown:
            out.told[shown[-1].final].append(push.tag)
        else:
            out.silent.append(push.tag)
    return out


def bot_toml(folder: Path, fake: FakeTelegram, health: int, settings: dict[str, dict[str, Any]]) -> str:
    """A bot.toml: its own data folder, health on ``health``, Telegram on the fake; ``settings`` on top."""
    sections: dict[str, dict[str, Any]] = {
        "bot": {"data_dir": str(folder / "data"), "log_level": "info"},
        "health": {"port": health},
        "telegram": {"base_url": fake.base_url, "base_file_url": fake.base_file_url, "poll_timeout": 1},
    }
    for name, values in settings.items():
        sections.setdefault(name, {}).update(values)
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for name, values in sections.items()
    )


class BotProcess:
    """`tests/bench/chaos_bot.py` as a separate process on the fake Telegram API, with its own data
    folder and health port; ``settings`` (by section) go into its bot.toml."""

    def __init__(
        self,
        folder: Path,
        fake: FakeTelegram,
        settings: dict[str, dict[str, Any]] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fake = fake
        self.health = free_port()
        self.config = folder / "bot.toml"
        self.config.write_text(bot_toml(folder, fake, self.health, settings or {}), encoding="utf-8")
        self.log = folder / "bot.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 180) -> None:
        """Start it and wait until it polls the fake API (health, models and character are up by then)."""
        env = {**os.environ, "TELEGRAM_TOKEN": self.fake.token}
        env.pop("DISCORD_TOKEN", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.chaos_bot", "--config", str(self.config), *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while not self.fake.sent("getUpdates"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited ({self.proc.returncode}); log: {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not start within {timeout:.0f} s; log: {self.log}")
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.health}{path}") as r:
            return r.status, await r.text()

    async def metrics(self) -> dict[str, float]:
        """`/metrics`, each counter summed over its labels (``greenroom_rate_limited_total`` …)."""
        totals: dict[str, float] = defaultdict(float)
        for line in (await self._get("/metrics"))[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                totals[name.split("{", 1)[0]] += float(value)
        return totals

    async def readiness(self) -> str:
        """`/readyz` in short: "ready", or the checks that fail."""
        status, body = await self._get("/readyz")
        if status == 200:
            return "ready"
        checks = json.loads(body).get("checks", {})
        return "not ready: " + "; ".join(f"{name}: {why}" for name, why in checks.items() if why != "ok")

    def _status(self, field_name: str) -> int:
        """A figure from /proc/PID/status, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field_name)

    def rss(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> bool:
        """Start the peak RSS over from now (Linux's clear_refs); False where that is not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak(self) -> int:
        return self._status("VmHWM")

    async def stop(self, timeout: float = 60) -> tuple[float, int | None]:
        """SIGTERM; the seconds until the process had exited, and its exit code (None: still running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0, self.proc.returncode if self.proc else None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            code = None
        return time.monotonic() - began, code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
