"""Safe extraction of character archives (.zip, .charx): limits first, then only plain files.

Refused: archives over the size limit, too many members, too much uncompressed data (zip
bombs), single members over the file limit, absolute paths and paths that leave the
extraction folder (zip-slip), symbolic links and other special entries, encrypted members.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from greenroom.memory.characters import CharacterError


@dataclass(frozen=True)
class ArchiveLimits:
    archive_bytes: int = 200 * 1024 * 1024
    members: int = 5_000
    total_bytes: int = 500 * 1024 * 1024
    file_bytes: int = 50 * 1024 * 1024
    ratio: int = 200  # uncompressed / compressed, per member


def _safe_name(info: zipfile.ZipInfo, archive: str) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
        raise CharacterError(f"{archive}: member '{info.filename}' points outside the archive folder")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no file type
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise CharacterError(f"{archive}: member '{info.filename}' is a link or special file")
    if info.flag_bits & 0x1:
        raise CharacterError(f"{archive}: member '{info.filename}' is encrypted")
    return path


def extract_zip(path: Path, target: Path, limits: ArchiveLimits = ArchiveLimits()) -> Path:
    """Check every member against the limits, then extract the plain files into ``target``."""
    name = path.name
    size = path.stat().st_size
    if size > limits.archive_bytes:
        raise CharacterError(f"{name}: {size} bytes is over the {limits.archive_bytes}-byte archive limit")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CharacterError(f"{name}: not a readable zip archive ({e})") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.members:
            raise CharacterError(f"{name}: {len(members)} members is over the {limits.members}-member limit")
        total = sum(m.file_size for m in members)
        if total > limits.total_bytes:
            raise CharacterError(f"{name}: {total} bytes uncompressed is over the {limits.total_bytes}-byte limit")
        plan = []
        for info in members:
            member = _safe_name(info, name)
            if info.is_dir():
                continue
            if info.file_size > limits.file_bytes:
                raise CharacterError(
                    f"{name}: '{info.filename}' ({info.file_size} bytes) is over the "
                    f"{limits.file_bytes}-byte file limit"
                )
            if info.file_size > limits.ratio * max(info.compress_size, 1) and info.file_size > 1024 * 1024:
                raise CharacterError(
                    f"{name}: '{info.filename}' expands {info.file_size // max(info.compress_size, 1)}"
                    f"-fold (a zip bomb?)"
                )
            plan.append((info, target.joinpath(*member.parts)))
        for info, dest in plan:
            dest.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with archive.open(info) as src, dest.open("wb") as out:
                while block := src.read(1 << 20):
                    written += len(block)
                    if written > info.file_size or written > limits.file_bytes:  # lying headers
                        raise CharacterError(f"{name}: '{info.filename}' is larger than its header says")
                    out.write(block)
    return target
