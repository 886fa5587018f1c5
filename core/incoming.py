"""Files that come over the network for the readers on disk: fetched from a link through the safe
fetcher (public addresses, size and time limits), or sent in chat; staged in a temporary folder
under a safe name."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from yarl import URL

from greenroom.core.config import FetchSection
from greenroom.models.fakenews.fetch import SafeFetcher

FILE_TYPES = (  # what a character or lorebook file may be served as
    "application/json",
    "application/zip",
    "application/x-zip-compressed",
    "application/octet-stream",
    "application/jsonl",
    "application/x-ndjson",
    "text/plain",
    "image/png",
    "image/apng",
)


def safe_name(filename: str, default: str) -> str:
    """A file name without folders or odd characters, never hidden."""
    return re.sub(r"[^\w.-]", "_", Path(filename).name).lstrip(".") or default


async def fetch_file(fetch: FetchSection, url: str, default: str) -> tuple[str, bytes]:
    """A file from a link (its safe name, its bytes), capped at ``fetch.max_character_mb``."""
    fetcher = SafeFetcher(fetch.deadline, int(fetch.max_character_mb * 1_000_000), fetch.allow)
    fetched = await fetcher.get(url, FILE_TYPES)
    return safe_name(URL(fetched.url).name, default), fetched.body


@contextmanager
def staged(filename: str, data: bytes, default: str) -> Iterator[Path]:
    """The bytes as a file of that (safe) name in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="greenroom-upload-") as folder:
        path = Path(folder) / safe_name(filename, default)
        path.write_bytes(data)
        yield path
