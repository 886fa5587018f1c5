"""Locating model files: local paths, or files inside installed model packages (no hub)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from greenroom.errors import UserError


class ModelFileError(UserError):
    """A model file that is missing, unreadable or not the one expected."""


def resolve_model_path(ref: str) -> Path:
    """`package:PKG/sub/path` (a file shipped in an installed package) or a filesystem path."""
    if ref.startswith("package:"):
        package, _, inner = ref[len("package:") :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(f"model package '{package}' is not installed (run `make setup`)")
        path = Path(next(iter(spec.submodule_search_locations))) / inner
    else:
        path = Path(ref).expanduser()
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(path: Path, expected: str) -> Path:
    """Check a file's sha256 against the configured one; a stamp file caches a good check."""
    if not expected:
        return path
    stat = path.stat()
    stamp = f"{expected}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = Path.home() / ".cache" / "greenroom" / "verified" / hashlib.sha1(str(path).encode()).hexdigest()
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
