"""`python -m tests.bench models`: the model catalogue's offline entries and `greenroom model pull`.

- assembling a chunked model from its installed packages (concatenate + sha256) against copying
  the same chunk files (the disk's own speed);
- pulling a GGUF from a local HTTP server, whole and resumed after a cut connection, against
  copying the file;
- the memory of each offline chat model loaded by llama.cpp (n_ctx 2048, a 200-token prompt
  evaluated), against its file size: the catalogue's ``memory_gb`` column.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenroom.models.assemble import assemble, chunk_paths
from greenroom.models.catalogue import CATALOGUE, ENTRIES
from greenroom.models.download import download
from greenroom.models.files import resolve_model_path
from tests.bench.common import table
from tests.file_server import FileServer

RSS = """
import resource, sys
from greenroom.models.llm import LlamaCppLLM
llm = LlamaCppLLM(sys.argv[1], n_ctx=2048)
llm.llama.create_completion("word " * 200, max_tokens=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _copy(sources: list[Path], dest: Path) -> None:
    with dest.open("wb") as out:
        for path in sources:
            with path.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)


def _assembly(folder: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    for entry in ENTRIES:
        f = entry.files[0]
        paths, missing = chunk_paths(f.chunks) if f.chunks else ([], ["-"])
        if missing:
            continue
        copy = _seconds(lambda: _copy(paths, folder / "copy.bin"))
        made = _seconds(lambda: assemble(entry.name, f.chunks, folder / f.name, f.sha256, entry.pip))
        (folder / "copy.bin").unlink()
        size = (f.size or 0) / 1e6
        rows.append([f"assemble {entry.name}", f"{size / made:.0f} MB/s", f"{size / copy:.0f} MB/s", copy / made])
    return rows


def _pulls(folder: Path) -> list[list[object]]:
    model = resolve_model_path("smollm2-135m")
    served = folder / "served"
    served.mkdir()
    (served / model.name).symlink_to(model)
    size = model.stat().st_size / 1e6
    copy = _seconds(lambda: shutil.copyfile(model, folder / "copy.gguf"))
    rows: list[list[object]] = []
    with FileServer(served) as server:
        for label, cut in (("pull whole", None), ("pull, cut at half, resumed", int(size * 1e6 / 2))):
            dest = folder / "pulled" / model.name
            dest.unlink(missing_ok=True)
            if cut:
                server.cut_after(cut)
            took = _seconds(
                lambda: download(server.url(model.name), dest, CATALOGUE["smollm2-135m"].files[0].sha256, note=str)
            )
            rows.append([f"{label} ({size:.0f} MB)", f"{size / took:.0f} MB/s", f"{size / copy:.0f} MB/s", copy / took])
    return rows


def _memory(cache: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    env = {**os.environ, "GREENROOM_CACHE": str(cache)}
    for entry in ENTRIES:
        f = entry.files[0]
        if entry.kind != "chat" or entry.source == "download":
            continue
        if f.chunks and chunk_paths(f.chunks)[1]:
            continue
        out = subprocess.run(
            [sys.executable, "-c", RSS, entry.name], env=env, capture_output=True, text=True, check=True
        ).stdout
        rss = int(out.split()[-1]) / 1e9
        rows.append(
            [f"memory {entry.name}", f"{rss:.2f} GB", f"{(f.size or 0) / 1e9:.2f} GB file", rss * 1e9 / (f.size or 1)]
        )
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = folder / "cache"
        (cache / "models").mkdir(parents=True)
        rows = _assembly(cache / "models")
        rows += _pulls(folder)
        rows += _memory(cache)
    table(
        "Model catalogue: assembly and pull speed against a plain copy (ratio of MB/s); memory against the file size",
        ["what", "figure", "baseline", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
