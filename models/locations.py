"""Where model files are: the model cache (pulled and assembled files), files inside installed
packages (found without importing them), and the hashes recorded for files pulled without a pin
(trust on first download: later uses check against the recorded hash)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path


def cache_root() -> Path:
    """``$GREENROOM_CACHE``, else ``~/.cache/greenroom``."""
    return Path(os.environ.get("GREENROOM_CACHE") or Path.home() / ".cache" / "greenroom").expanduser()


def models_dir() -> Path:
    """``<cache>/models``: every pulled or assembled model file, under its catalogue file name."""
    return cache_root() / "models"


def package_file(package: str, inner: str) -> Path | None:
    """``inner`` inside the installed package ``package`` (its code is not run), or None when the
    package is not installed."""
    spec = importlib.util.find_spec(package)
    folder = next(iter(spec.submodule_search_locations or ()), None) if spec else None
    return Path(folder) / inner if folder else None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded_file() -> Path:
    return models_dir() / "sha256.json"


def recorded_sha256(file_name: str) -> str:
    """The hash recorded when ``file_name`` was pulled without a pin ("" when none was)."""
    try:
        return str(json.loads(_recorded_file().read_text(encoding="utf-8")).get(file_name, ""))
    except (OSError, ValueError, AttributeError):
        return ""


def record_sha256(file_name: str, sha256: str) -> None:
    """Remember the hash of a file pulled without a pin (written atomically)."""
    path = _recorded_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    known[file_name] = sha256
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
