"""A small fake Telegram Bot API on 127.0.0.1 for driving the real python-telegram-bot.

It records every call, serves `getUpdates` from a queue (honouring the offset), serves files,
and can be told to fail the next matching call (429 with retry_after, 400 parse errors).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

BOT = {"id": 999, "is_bot": True, "first_name": "Wren", "username": "wren_bot"}
DOWNLOAD_LIMIT = 20 * 1024 * 1024


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    method: str
    status: int
    description: str
    when: Callable[[dict[str, Any]], bool]
    parameters: dict[str, Any] | None = None


def _value(raw: str) -> Any:
    """Form values: nested objects arrive as JSON strings."""
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


class FakeTelegram(FakeServer[Call]):
    """Bot API routes `POST /bot{token}/{method}` and `GET /file/bot{token}/{path}`."""

    def __init__(self, token: str = "123456:TEST") -> None:
        super().__init__()
        self.token = token
        self.files: dict[str, bytes] = {}
        self.file_sizes: dict[str, int] = {}
        self.admins: dict[int, list[int]] = {}
        self.faults: list[_Fault] = []
        self.reject_token = False
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what tests do -------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        when: Callable[[dict[str, Any]], bool] = lambda p: True,
        retry_after: int | None = None,
    ) -> None:
        params = {"retry_after": retry_after} if retry_after is not None else None
        self.faults.append(_Fault(method, status, description, when, params))

    def add_file(self, file_id: str, data: bytes, size: int | None = None) -> None:
        self.files[file_id] = data
        self.file_sizes[file_id] = len(data) if size is None else size

    async def push(self, message: dict[str, Any]) -> None:
        """Queue an update carrying ``message`` for the next getUpdates."""
        async with self.changed:
            self._updates.append({"update_id": next(self._update_ids), "message": message})
            self.changed.notify_all()

    def message(
        self,
        text: str = "",
        chat_id: int = 1,
        user_id: int = 7,
        chat_type: str = "private",
        first_name: str = "Ann",
        **extra: Any,
    ) -> dict[str, Any]:
        """A Message object as Telegram would send it."""
        chat = {"id": chat_id, "type": chat_type}
        chat.update({"first_name": first_name} if chat_type == "private" else {"title": "Group"})
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
        }
        if text:
            message["text"] = text
        message.update(extra)
        return message

    def sent(self, method: str, **match: Any) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and all(str(c.params.get(k)) == str(v) for k, v in match.items())
        ]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 30.0, **match: Any) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (with these parameters) have arrived."""
        return await self.until(lambda: self.sent(method, **match), count, timeout)

    # -- the API -------------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token or self.reject_token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: _value(v) if isinstance(v, str) else v for k, v in (await request.post()).items()}
        await self.record(Call(method, params))
        for fault in self.faults:
            if fault.method == method and fault.when(params):
                self.faults.remove(fault)
                return self._error(fault.status, fault.description, fault.parameters)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._ok(True)
        return await handler(params)

    def _ok(self, result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    def _error(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _m_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok(BOT)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)

        def pending() -> list[dict[str, Any]]:
            return [u for u in self._updates if u["update_id"] >= offset]

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: bool(pending())), timeout)
            except TimeoutError:
                pass
            self._updates = pending()
            return self._ok(list(self._updates))

    async def _sent_message(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        return self._ok(
            {
                "message_id": int(params.get("message_id") or next(self._message_ids)),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT,
                "text": params.get("text", ""),
            }
        )

    _m_sendMessage = _sent_message
    _m_editMessageText = _sent_message

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        file_id = params["file_id"]
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        if self.file_sizes[file_id] > DOWNLOAD_LIMIT:
            return self._error(400, "Bad Request: file is too big")
        return self._ok(
            {
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_size": self.file_sizes[file_id],
                "file_path": f"videos/{file_id}",
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        await self.record(Call("download", {"file_id": file_id}))
        if file_id not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[file_id])

    async def _m_getChatAdministrators(self, params: dict[str, Any]) -> web.Response:
        ids = self.admins.get(int(params["chat_id"]), [])
        return self._ok(
            [
                {
                    "status": "administrator",
                    "user": {"id": i, "is_bot": False, "first_name": "Admin"},
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
                for i in ids
            ]
        )
