"""The catalogue's models on this machine: where each file is, what `greenroom model list` shows,
and `greenroom model pull NAME|URL` (a download, or an assembly from installed chunk packages)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from greenroom.errors import UserError
from greenroom.models.assemble import assemble, chunk_paths
from greenroom.models.catalogue import Entry, ModelFile, find
from greenroom.models.download import check_url, download
from greenroom.models.locations import models_dir, package_file, record_sha256, recorded_sha256, sha256_of

SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class PullError(UserError):
    """A model that is not in the catalogue, not on this machine yet, or asked for the wrong way."""


@dataclass(frozen=True)
class Pulled:
    path: Path
    sha256: str
    how: str  # what was done: downloaded, assembled, already here, installed with its package
    recorded: bool = False  # no pin was known: the hash computed now is what later uses check


def cached(f: ModelFile) -> Path:
    return models_dir() / f.name


def expected_sha256(f: ModelFile) -> str:
    """The file's pin, else the hash recorded when it was pulled ("" when neither)."""
    return f.sha256 or recorded_sha256(f.name)


def _package_path(entry: Entry) -> Path:
    package, _, inner = entry.files[0].package.removeprefix("package:").partition("/")
    path = package_file(package, inner)
    if path is None or not path.is_file():
        raise PullError(f"{entry.name} comes in a package that is not installed; install it with: {entry.pip}")
    return path


def status(entry: Entry) -> str:
    """Where the entry stands on this machine, in a word or two (`model list`)."""
    first = entry.files[0]
    if first.package:
        path = package_file(*first.package.removeprefix("package:").split("/", 1))
        return "installed" if path and path.is_file() else "pip install"
    if all(cached(f).is_file() for f in entry.files):
        return "on disk"
    if first.chunks:
        return "offline" if not chunk_paths(first.chunks)[1] else "pip install"
    return "download"


def local_model(entry: Entry) -> Path:
    """The entry's language-model file on this machine; one that comes in installed chunk packages is
    assembled now (`llm.model = "NAME"`, first use)."""
    first = entry.files[0]
    if first.package:
        return _package_path(entry)
    path = cached(first)
    if path.is_file():
        return path
    if first.chunks:
        return assemble(entry.name, first.chunks, path, first.sha256, entry.pip)
    size = f" ({entry.size / 1e9:.2f} GB)" if entry.size else ""
    raise PullError(f"{entry.name} is not downloaded yet: run `greenroom model pull {entry.name}`{size}")


def _bar(name: str, total: int | None, progress: bool) -> tqdm:
    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr, disable=not progress
    )


def _pull_file(entry: Entry, f: ModelFile, sha256: str, progress: bool, note: Callable[[str], None] | None) -> Pulled:
    if f.package:
        return Pulled(_package_path(entry), f.sha256, "installed with its package")
    path = cached(f)
    expected = sha256 or expected_sha256(f)
    if path.is_file():
        actual = sha256_of(path)
        if not expected or actual == expected:
            return Pulled(path, actual, "already here")
        path.unlink()  # damaged or replaced since: fetch it again
    if f.chunks:
        with _bar(f.name, f.size, progress) as bar:
            assemble(entry.name, f.chunks, path, expected, entry.pip, bar.update)
        return Pulled(path, expected, "assembled")
    actual = download(f.url, path, expected, progress, note=note)
    if not expected:
        record_sha256(f.name, actual)
    return Pulled(path, actual, "downloaded", recorded=not expected)


def _pull_url(url: str, sha256: str, progress: bool, note: Callable[[str], None] | None) -> Pulled:
    check_url(url)
    name = Path(unquote(urlsplit(url).path)).name
    if not name or name.startswith("."):
        raise PullError(f"cannot tell a file name from {url!r}: link to the file itself")
    path = models_dir() / name
    if path.is_file():
        actual = sha256_of(path)
        if not sha256 or actual == sha256:
            return Pulled(path, actual, "already here")
        path.unlink()
    actual = download(url, path, sha256, progress, note=note)
    if not sha256:
        record_sha256(name, actual)
    return Pulled(path, actual, "downloaded", recorded=not sha256)


def pull(ref: str, sha256: str = "", progress: bool = False, note: Callable[[str], None] | None = None) -> list[Pulled]:
    """Bring a catalogue entry's files (or the file a link names) into the model cache, hash-checked."""
    if sha256 and not SHA256.fullmatch(sha256):
        raise PullError("--sha256 wants the file's sha256: 64 hexadecimal digits")
    sha256 = sha256.lower()
    entry = find(ref)
    if entry is None:
        if "://" not in ref:
            raise PullError(f"no model named {ref!r} in the catalogue (see `greenroom model list`), and not a link")
        return [_pull_url(ref, sha256, progress, note)]
    if sha256:
        pin = entry.files[0].sha256
        if len(entry.files) > 1 or (pin and pin != sha256):
            which = f"pinned to {pin[:12]}…" if pin else "made of several files"
            raise PullError(f"{entry.name} is {which}: --sha256 is for links and single-file models without a pin")
    return [_pull_file(entry, f, sha256, progress, note) for f in entry.files]
