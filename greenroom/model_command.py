"""`greenroom model list|pull|use`: the model catalogue, downloads and assemblies, the bot's choice."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from greenroom.compose import MODEL_VARIABLE, Greenroom
from greenroom.errors import UserError
from greenroom.models.catalogue import ENTRIES, Entry, entry_for, find
from greenroom.models.files import ModelFileError, resolve_model_path
from greenroom.models.locations import sha256_of
from greenroom.models.pull import local_model, pull, status


class ModelChoiceError(UserError):
    """A model that cannot be the bot's language model."""


def _rows(app: Greenroom) -> tuple[list[dict], dict]:
    model, _, origin = app.language_model()
    current = entry_for(model)
    rows = [
        {
            "name": e.name,
            "kind": e.kind,
            "title": e.title,
            "size_gb": round(e.size / 1e9, 2) if e.size else None,
            "memory_gb": e.memory_gb,
            "licence": e.licence,
            "source": e.source,
            "pinned": all(f.sha256 for f in e.files),
            "status": status(e),
            "in_use": e is current,
        }
        for e in ENTRIES
    ]
    return rows, {"model": model, "from": origin}


def _list(app: Greenroom, as_json: bool) -> None:
    rows, in_use = _rows(app)
    if as_json:
        print(json.dumps({"models": rows, "in_use": in_use}, ensure_ascii=False))
        return
    header = ["", "name", "kind", "size", "memory", "licence", "on this machine"]
    cells = [
        [
            "*" if r["in_use"] else "",
            r["name"],
            r["kind"],
            f"{r['size_gb']:.2f} GB" if r["size_gb"] else "?",
            f"{r['memory_gb']:.2f} GB",
            r["licence"],
            r["status"] + ("" if r["pinned"] else " (no sha256 pin)"),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in [header, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    named = next((r["name"] for r in rows if r["in_use"] and r["name"] != in_use["model"]), None)
    print(f"\nin use: {in_use['model']}{f' ({named})' if named else ''}, from {in_use['from']}")
    print(
        "installed: in an installed package; offline: assembled from installed packages on first use; "
        "download: `greenroom model pull NAME`"
    )


def _pull(app: Greenroom, ref: str | None, sha256: str | None) -> None:
    if not ref:
        configured = app.language_model()[0]
        if find(configured) is None:
            print(f"the model in use is {configured}: nothing to pull")
            return
        ref = configured
    for pulled in pull(ref, sha256 or "", progress=sys.stderr.isatty()):
        print(f"{pulled.how}: {pulled.path} (sha256 {pulled.sha256})")
        if pulled.recorded:
            print("  no sha256 was pinned for it: this one is recorded, and later uses check against it")


def _use_entry(entry: Entry) -> Path:
    if entry.kind != "chat":
        raise ModelChoiceError(
            f"{entry.name} is a vision-language model, for describing video (issue 18), not a chat model; "
            "pick a chat model from `greenroom model list`"
        )
    return local_model(entry)  # a chunked model is assembled now; one not yet downloaded says so


def _use_file(ref: str) -> tuple[str, Path]:
    path = resolve_model_path(ref)
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelFileError(f"{path}: not a GGUF model file")
    return (ref if ref.startswith("package:") else str(path.absolute())), path


def _use(app: Greenroom, ref: str | None, clear: bool) -> None:
    if clear:
        had = app.model_choice.clear()
        print(("cleared the choice; " if had else "nothing was chosen; ") + f"the bot uses {app.language_model()[0]}")
        return
    if not ref:
        raise ModelChoiceError("name a model from `greenroom model list` or a GGUF file, or pass --clear")
    entry = find(ref)
    if entry is not None:
        path = _use_entry(entry)
        app.model_choice.set(entry.name, "")
    else:
        chosen, path = _use_file(ref)
        app.model_choice.set(chosen, sha256_of(path))  # pinned now: a file replaced later is refused
    print(f"the bot now talks with {entry.name if entry else path} ({path}); a running bot switches on restart")
    if MODEL_VARIABLE in os.environ:
        print(f"note: {MODEL_VARIABLE} is set in this environment and wins over this choice")
    if app.config.llm.backend != "llama_cpp":
        print(f'note: llm.backend is "{app.config.llm.backend}": the server\'s model answers, not this one')


def run(app: Greenroom, args: argparse.Namespace) -> int:
    if args.action == "list":
        _list(app, args.json)
    elif args.action == "pull":
        _pull(app, args.ref, args.sha256)
    else:
        _use(app, args.ref, args.clear)
    return 0
