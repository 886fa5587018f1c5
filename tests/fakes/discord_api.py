"""A small fake Discord (REST + gateway on one port, 127.0.0.1) for driving the real discord.py.

The gateway speaks plain JSON text frames: HELLO, heartbeat ACKs, READY on IDENTIFY, then
whatever dispatches a test pushes. REST calls are recorded; the next matching call can be
made to fail (429 with retry_after). Files for attachments are served from `/files/`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.server import FakeServer

APP_ID = 5000
BOT = {"id": "9000", "username": "wren", "discriminator": "0", "global_name": "Wren", "avatar": None, "bot": True}
GUILD = "100"
CHANNEL = "200"
THREAD = "300"
ADMIN_ROLE = "150"
MANAGE_GUILD = 1 << 5
EVERYONE_PERMS = (1 << 10) | (1 << 11)  # view channel, send messages


@dataclass
class Call:
    method: str
    path: str
    body: Any
    at: float = field(default_factory=time.monotonic)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py wants exactly "application/json" (no charset) before it parses a body.
    return web.Response(
        body=json.dumps(data), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def user(user_id: str, name: str) -> dict[str, Any]:
    return {"id": user_id, "username": name.lower(), "discriminator": "0", "global_name": name, "avatar": None}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def message_payload(
    message_id: str, channel_id: str, author: dict[str, Any], content: str, mentions: list[dict[str, Any]]
) -> dict[str, Any]:
    """A Discord message object as the gateway and REST API send it."""
    return {
        "id": message_id,
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
    }


class FakeDiscord(FakeServer[Call]):
    """REST under `/api/v10`, the gateway at `/gw`, attachment files under `/files/`."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.faults: list[tuple[str, Callable[[Call], bool], float]] = []
        self.reject_token = False
        self.identified = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = itertools.count(1)
        self._ids = itertools.count(10_000)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gw", self._gateway)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        await super().stop()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gw"

    # -- what tests do -------------------------------------------------------------------------
    def fail_next(self, method: str, path_part: str, retry_after: float) -> None:
        """Answer the next matching REST call with 429 and ``retry_after`` seconds."""
        self.faults.append((method, lambda c: path_part in c.path, retry_after))

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"http://127.0.0.1:{self.port}/files/{name}"

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Push a gateway dispatch (MESSAGE_CREATE, GUILD_CREATE, INTERACTION_CREATE ...)."""
        await self.identified.wait()
        for ws in self._sockets:
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": data}))

    async def add_guild(self, admin_ids: tuple[str, ...] = ()) -> None:
        """A guild with one text channel, one thread and an admin role (manage server) held by ``admin_ids``."""
        perms = lambda p: {
            "permissions": str(p),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        await self.dispatch(
            "GUILD_CREATE",
            {
                "id": GUILD,
                "name": "Theatre",
                "owner_id": "1",
                "unavailable": False,
                "large": False,
                "member_count": 3,
                "features": [],
                "emojis": [],
                "stickers": [],
                "icon": None,
                "roles": [
                    {"id": GUILD, "name": "@everyone", **perms(EVERYONE_PERMS)},
                    {"id": ADMIN_ROLE, "name": "stage crew", **perms(EVERYONE_PERMS | MANAGE_GUILD)},
                ],
                "channels": [
                    {
                        "id": CHANNEL,
                        "type": 0,
                        "name": "lobby",
                        "position": 0,
                        "permission_overwrites": [],
                        "guild_id": GUILD,
                    }
                ],
                "threads": [
                    {
                        "id": THREAD,
                        "type": 11,
                        "parent_id": CHANNEL,
                        "name": "rehearsal",
                        "guild_id": GUILD,
                        "owner_id": "1",
                        "message_count": 0,
                        "member_count": 1,
                        "thread_metadata": {
                            "archived": False,
                            "auto_archive_duration": 60,
                            "archive_timestamp": now_iso(),
                            "locked": False,
                        },
                    }
                ],
                "members": [
                    {"user": BOT, "roles": [], "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0}
                ]
                + [
                    {
                        "user": user(a, f"Admin{a}"),
                        "roles": [ADMIN_ROLE],
                        "joined_at": now_iso(),
                        "deaf": False,
                        "mute": False,
                        "flags": 0,
                    }
                    for a in admin_ids
                ],
            },
        )

    def message(
        self,
        content: str,
        author: str = "7",
        channel: str | None = None,
        guild: bool = False,
        mention: bool = False,
        roles: tuple[str, ...] = (),
        **extra: Any,
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE payload: a DM unless ``guild``; ``mention`` puts the bot's mention first."""
        if mention:
            content = f"<@{BOT['id']}> {content}"
        data = message_payload(
            str(next(self._ids)),
            channel or (CHANNEL if guild else "400"),
            user(author, f"User{author}"),
            content,
            [BOT] if mention else [],
        )
        if guild:
            data["guild_id"] = GUILD
            data["member"] = {"roles": list(roles), "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0}
        data.update(extra)
        return data

    def sent(self, method: str, path_part: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and path_part in c.path]

    async def wait_for(self, method: str, path_part: str, count: int = 1, timeout: float = 30.0) -> list[Call]:
        return await self.until(lambda: self.sent(method, path_part), count, timeout)

    # -- REST ------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        raw = await request.read()
        body: Any = None
        if raw and request.content_type == "application/json":
            body = json.loads(raw)
        elif raw and request.content_type.startswith("multipart/"):
            body = {"multipart": raw.decode("utf-8", "replace")}
        call = Call(request.method, path, body)
        await self.record(call)
        if self.reject_token:
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        for fault in self.faults:
            if fault[0] == request.method and fault[1](call):
                self.faults.remove(fault)
                return _json(
                    {"message": "You are being rate limited.", "retry_after": fault[2], "global": False},
                    429,
                    {"Via": "1.1 google", "Retry-After": str(fault[2])},
                )
        return self._answer(request.method, path, body)

    def _message(self, channel_id: str, body: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
        content = (body or {}).get("content") or ""
        return message_payload(message_id or str(next(self._ids)), channel_id, BOT, content, [])

    def _answer(self, method: str, path: str, body: Any) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return _json(BOT)
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP_ID),
                    "name": "Wren",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user("1", "Owner"),
                    "verify_key": "k",
                    "flags": 0,
                }
            )
        if parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            return _json(
                [
                    {
                        **c,
                        "id": str(next(self._ids)),
                        "application_id": str(APP_ID),
                        "version": "1",
                        "type": c.get("type", 1),
                    }
                    for c in body
                ]
            )
        if parts[0] == "channels" and parts[-1] == "typing":
            return web.Response(status=204)
        if parts[0] == "channels" and parts[2] == "messages":
            return _json(self._message(parts[1], body, parts[3] if len(parts) > 3 else None))
        if parts[0] == "interactions":
            return _json({"interaction": {"id": parts[1], "type": 2, "response_message_loading": True}})
        if parts[0] == "webhooks":
            return _json(self._message(CHANNEL, body, parts[4] if len(parts) > 4 else None))
        return _json({"message": f"404: no fake for {method} {path}", "code": 0}, 404)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self.record(Call("GET", f"/files/{name}", None))
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name])

    # -- gateway ---------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45_000}}))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                if payload["op"] == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif payload["op"] == 2:
                    await self.record(Call("IDENTIFY", "/gw", payload["d"]))
                    await ws.send_str(
                        json.dumps(
                            {
                                "op": 0,
                                "t": "READY",
                                "s": next(self._seq),
                                "d": {
                                    "v": 10,
                                    "user": BOT,
                                    "guilds": [],
                                    "session_id": "fake-session",
                                    "resume_gateway_url": self.gateway_url,
                                    "application": {"id": str(APP_ID), "flags": 0},
                                },
                            }
                        )
                    )
                    self.identified.set()
        finally:
            self._sockets.remove(ws)
        return ws
