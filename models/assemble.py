"""Chunked models on PyPI: concatenate the chunk files of several installed packages into one GGUF.

The packages are located with `importlib.util.find_spec` and never imported: their own code does
not run. The file is written under a temporary name in the cache folder, hashed while it is written,
and renamed into place only when the hash matches the pin, so a damaged chunk never leaves a file
under the final name.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from greenroom.errors import UserError
from greenroom.models.catalogue import Chunk
from greenroom.models.locations import package_file

BLOCK = 1 << 22


class AssemblyError(UserError):
    """Chunk packages that are missing or damaged, or no room to write the model."""


def chunk_paths(chunks: Sequence[Chunk]) -> tuple[list[Path], list[str]]:
    """The chunk files that are installed, and the packages that are not."""
    found, missing = [], []
    for chunk in chunks:
        path = package_file(chunk.package, chunk.path)
        if path is not None and path.is_file():
            found.append(path)
        else:
            missing.append(chunk.package)
    return found, missing


def assemble(
    name: str,
    chunks: Sequence[Chunk],
    dest: Path,
    sha256: str,
    pip: str,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``dest`` from ``chunks`` (in order) and check it against ``sha256``; ``progress`` gets byte counts."""
    paths, missing = chunk_paths(chunks)
    if missing:
        raise AssemblyError(
            f"{name} is assembled from {len(chunks)} packages and {len(missing)} are not installed "
            f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); install them with: {pip}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for path in paths:
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(BLOCK), b""):
                        h.update(block)
                        out.write(block)
                        if progress:
                            progress(len(block))
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise AssemblyError(f"disk full while assembling {name} in {dest.parent}; free some space") from None
        raise AssemblyError(f"could not assemble {name} in {dest.parent}: {e.strerror or e}") from None
    actual = h.hexdigest()
    if sha256 and actual != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise AssemblyError(
            f"{name}: the assembled file's sha256 {actual[:12]}… does not match the pinned {sha256[:12]}…: "
            f"a chunk package is damaged or not the pinned version; reinstall them with: "
            f"{pip.replace('pip install', 'pip install --force-reinstall', 1)}"
        )
    os.replace(tmp, dest)
    return dest
