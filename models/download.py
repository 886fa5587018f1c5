"""Downloading a model file over HTTP(S): resumable, hash-checked, progress on stderr.

What has arrived waits in ``<file>.part``; the next request asks for the rest (an HTTP Range), so a
cut connection resumes where it stopped, within the same command (a few times, as long as each try
gets further) or the next one. A server that ignores Range sends the whole file again, and the part
starts over. Only a complete file whose sha256 matches is renamed to its final name; a mismatch
removes the download (after one fresh try when it had been resumed from an earlier run).
"""

from __future__ import annotations

import errno
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from greenroom.errors import UserError
from greenroom.models.locations import sha256_of

BLOCK = 1 << 20
TRIES = 4  # per command, each of which must get further than the last


class DownloadError(UserError):
    """A download that could not be done or was not the file expected."""


def check_url(url: str) -> None:
    """Only http:// and https:// links."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError(f"only http:// and https:// links can be pulled (got {url!r})")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    """Whether a 206 answer continues at ``offset`` (``Content-Range: bytes OFFSET-…``)."""
    value = response.headers.get("content-range", "")
    return response.status_code == 206 and value.startswith(f"bytes {offset}-")


def _fetch_once(client: httpx.Client, url: str, part: Path, bar: tqdm, note: Callable[[str], None]) -> None:
    """One request: the rest of the file (or all of it) appended to ``part``."""
    offset = _size(part)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as r:
        if r.status_code == 416 and offset:
            return  # nothing after the bytes we have: the part is whole (the hash decides)
        if r.status_code == 404:
            raise DownloadError(f"{url}: not found (HTTP 404)")
        if r.status_code >= 400:
            raise DownloadError(f"{url}: the server answered HTTP {r.status_code} {r.reason_phrase}")
        if offset and not _resumes_at(r, offset):
            note(f"the server does not resume downloads; starting {part.name.removesuffix('.part')} again")
            if r.status_code == 206:  # some other range: ask for the whole file instead
                part.unlink()
                return _fetch_once(client, url, part, bar, note)
            offset = 0
        length = r.headers.get("content-length", "")
        if length.isdigit():
            free = shutil.disk_usage(part.parent).free
            if int(length) > free:
                raise DownloadError(
                    f"not enough disk space in {part.parent}: {_gb(int(length))} to download, {_gb(free)} free"
                )
            bar.reset(total=offset + int(length))
        bar.update(offset - bar.n)
        with part.open("ab" if offset else "wb") as f:
            for block in r.iter_bytes():
                f.write(block)
                bar.update(len(block))


def _fetch(url: str, part: Path, timeout: float, bar: tqdm, note: Callable[[str], None]) -> None:
    """Requests until the server has sent everything, resuming after a cut connection."""
    host = urlsplit(url).netloc
    with httpx.Client(follow_redirects=True, timeout=timeout) as client:
        for attempt in range(1, TRIES + 1):
            before = _size(part)
            try:
                return _fetch_once(client, url, part, bar, note)
            except httpx.ConnectError as e:
                reason = "connection refused" if "refused" in str(e).lower() else str(e)
                raise DownloadError(f"could not connect to {host}: {reason}") from None
            except httpx.TimeoutException:
                if _size(part) > before and attempt < TRIES:
                    continue
                raise DownloadError(
                    f"{host} stopped answering ({timeout:g} s); run the same command to resume"
                ) from None
            except httpx.TransportError as e:  # the connection was cut mid-file
                if _size(part) > before and attempt < TRIES:
                    note(f"connection lost at {_gb(_size(part))}; resuming")
                    continue
                raise DownloadError(
                    f"the download from {host} was cut off at {_gb(_size(part))} ({e}); "
                    "run the same command again to resume"
                ) from None
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise DownloadError(
                        f"disk full while writing {part}: free some space and run the same command again to resume"
                    ) from None
                raise DownloadError(f"could not write {part}: {e.strerror or e}") from None


def download(
    url: str,
    dest: Path,
    sha256: str = "",
    progress: bool = False,
    timeout: float = 30.0,
    note: Callable[[str], None] | None = None,
) -> str:
    """Fetch ``url`` into ``dest`` and return its sha256 (checked against ``sha256`` when given)."""
    check_url(url)
    say = note or (lambda text: print(f"greenroom: {text}", file=sys.stderr))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    fresh_try_left = _size(part) > 0  # a part from an earlier run could be what is wrong
    while True:
        with tqdm(
            unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, file=sys.stderr, disable=not progress
        ) as bar:
            _fetch(url, part, timeout, bar, say)
        actual = sha256_of(part)
        if not sha256 or actual == sha256.lower():
            part.replace(dest)
            return actual
        part.unlink()
        if not fresh_try_left:
            raise DownloadError(
                f"{dest.name}: sha256 {actual[:12]}… does not match the expected {sha256[:12]}…; "
                "the download was removed"
            )
        fresh_try_left = False
        say(f"{dest.name} did not match its sha256 after resuming; downloading it again from the start")
