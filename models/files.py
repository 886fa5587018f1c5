"""Locating model files: catalogue names, files inside installed model packages, local paths (no hub)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from greenroom.errors import UserError
from greenroom.models.catalogue import find
from greenroom.models.locations import cache_root, package_file, sha256_of
from greenroom.models.pull import cached, expected_sha256, local_model


class ModelFileError(UserError):
    """A model file that is missing, unreadable or not the one expected."""


def resolve_model_path(ref: str) -> Path:
    """A catalogue name (`qwen2.5-coder-0.5b`: assembled into the model cache on first use when it
    comes in chunk packages), `package:PKG/sub/path` (a file shipped in an installed package) or a
    filesystem path."""
    entry = find(ref)
    if entry is not None:
        return local_model(entry)
    if ref.startswith("package:"):
        package, _, inner = ref[len("package:") :].partition("/")
        found = package_file(package, inner)
        if found is None:
            raise ModelFileError(f"model package '{package}' is not installed (run `make setup`)")
        path = found
    else:
        path = Path(ref).expanduser()
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    return path


def pinned_sha256(ref: str, configured: str) -> str:
    """The sha256 the model ``ref`` must have: a catalogue entry's pin (or the hash recorded when it
    was pulled without one), else the configured ``llm.sha256``."""
    entry = find(ref)
    return expected_sha256(entry.files[0]) if entry is not None else configured


def verified(path: Path, expected: str) -> Path:
    """Check a file's sha256 against the configured one; a stamp file caches a good check."""
    if not expected:
        return path
    stat = path.stat()
    stamp = f"{expected}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = cache_root() / "verified" / hashlib.sha1(str(path).encode()).hexdigest()
    if cache.exists() and cache.read_text() == stamp:
        return path
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ModelFileError(f"{path}: sha256 {actual[:12]}… does not match the configured {expected[:12]}…")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(stamp)
    except OSError:
        pass
    return path


def resolve_mmproj(model: str, mmproj: str) -> tuple[Path, str]:
    """The projector file of a vision-language model and its sha256 pin ("" = none): ``mmproj`` when
    given, else the catalogue entry's own (pulled with it by `greenroom model pull NAME`)."""
    if mmproj:
        return resolve_model_path(mmproj), ""
    entry = find(model)
    if entry is None or entry.kind != "vision" or len(entry.files) < 2:
        raise ModelFileError("video.mmproj is empty: name the model's projector file (mmproj-*.gguf)")
    projector = entry.files[1]
    path = cached(projector)
    if not path.is_file():
        raise ModelFileError(f"{entry.name}'s projector is not downloaded yet: run `greenroom model pull {entry.name}`")
    return path, expected_sha256(projector)
