"""A real HTTP file server on 127.0.0.1 for `greenroom model pull`: a folder's files with HTTP Range
(or without it), and a response cut short on request, as a dropped connection does."""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

BLOCK = 1 << 16


class FileServer:
    """Serves ``folder``. ``ranges=False``: a server that ignores Range and always sends everything.
    ``cut_after(n)``: the next response stops after ``n`` bytes of its body and the connection closes.
    ``requests`` records each request's path and Range header."""

    def __init__(self, folder: Path, ranges: bool = True) -> None:
        self.folder = folder
        self.ranges = ranges
        self.requests: list[tuple[str, str | None]] = []
        self._cut: int | None = None
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def cut_after(self, n: int) -> None:
        self._cut = n

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _take_cut(self) -> int | None:
        cut, self._cut = self._cut, None
        return cut

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                path = server.folder / unquote(self.path.lstrip("/"))
                if not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                match = re.fullmatch(r"bytes=(\d+)-", asked or "") if server.ranges else None
                start = int(match[1]) if match else 0
                if start >= size and match:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if match else 200)
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                left = size - start
                cut = server._take_cut()
                if cut is not None:
                    left = min(left, cut)
                with path.open("rb") as f:
                    f.seek(start)
                    while left > 0:
                        block = f.read(min(BLOCK, left))
                        self.wfile.write(block)
                        left -= len(block)
                if cut is not None:  # the connection drops mid-file
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        return Handler
