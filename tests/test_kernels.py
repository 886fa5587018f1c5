"""llama.cpp's CPU kernels: the best variant this CPU runs, a self-test that falls back, a cached verdict.

Real parts: the installed wheel's CPU variants, the SmolLM2 GGUF, the self-test subprocess. The one
fake is a variant that crashes (this CPU has no AMX to crash the real `sapphirerapids` one): a tiny
`libggml-cpu-zzz.so` built with gcc whose `ggml_backend_score()` outscores every real variant and
whose `ggml_backend_init()` dies with SIGSEGV, as the AMX kernels did; it sits beside links to the
real variants. A second one, `future`, scores 0: a variant no CPU here can run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenroom.models.files import resolve_model_path
from greenroom.models.llm import kernels
from greenroom.models.llm.kernels import SELF_TEST_MODEL, KernelsError, choose, variant_folder, variants
from tests.conftest import ROOT

CRASHING = (
    "#include <signal.h>\n"
    "int ggml_backend_score(void) { return 1 << 20; }\n"
    "void *ggml_backend_init(void) { raise(SIGSEGV); return 0; }\n"
)
EXITING = (  # a failure that says nothing lasting about the kernels (as an unreadable model would)
    "#include <stdlib.h>\n"
    "int ggml_backend_score(void) { return 1 << 20; }\n"
    "void *ggml_backend_init(void) { exit(3); }\n"
)
UNRUNNABLE = "int ggml_backend_score(void) { return 0; }\nvoid *ggml_backend_init(void) { return 0; }\n"


@pytest.fixture(scope="module")
def real() -> Path:
    folder = variant_folder()
    assert folder, "llama-cpp-python was built without GGML_CPU_ALL_VARIANTS: run deploy/bootstrap.sh"
    return folder


def beside(real: Path, folder: Path, fakes: dict[str, str]) -> Path:
    """``folder`` with links to the real variants and the ``fakes`` (name: C source) built with gcc."""
    folder.mkdir(exist_ok=True)
    for lib in real.glob("libggml-cpu-*.so"):
        (folder / lib.name).symlink_to(lib)
    for name, source in fakes.items():
        c = folder / f"{name}.c"
        c.write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", folder / f"libggml-cpu-{name}.so", c], check=True)
    return folder


@pytest.fixture(scope="module")
def rigged(real: Path, tmp_path_factory) -> Path:
    """The real variants plus a crashing `zzz` that outscores them and an unrunnable `future`."""
    return beside(real, tmp_path_factory.mktemp("variants"), {"zzz": CRASHING, "future": UNRUNNABLE})


@pytest.fixture(scope="module")
def model() -> Path:
    return resolve_model_path(SELF_TEST_MODEL)


@pytest.fixture
def tested(monkeypatch) -> list[str]:
    """The variants self-tested (really, in a subprocess) during the test, in order."""
    names: list[str] = []
    real_self_test = kernels.self_test

    def counting(variant, path):
        names.append(variant.name)
        return real_self_test(variant, path)

    monkeypatch.setattr(kernels, "self_test", counting)
    return names


def test_auto_loads_the_best_variant_this_cpu_runs_and_the_model_speaks(tmp_path, real):
    script = (
        "import json\n"
        "from greenroom.core.config import LlmSection\n"
        "from greenroom.models.llm import Generation, LlamaCppLLM, Sampling\n"
        "from greenroom.models.llm.kernels import load_cpu_kernels\n"
        "c = LlmSection()\n"
        "llm = LlamaCppLLM(c.model, c.sha256, n_ctx=512)\n"
        "ask = [{'role': 'user', 'content': 'Say hello to the lighthouse keeper.'}]\n"
        "text = ''.join(llm.stream(ask, Sampling(max_tokens=12, temperature=0.0), Generation()))\n"
        "print(json.dumps({'active': load_cpu_kernels(), 'text': text}))\n"
    )
    env = {**os.environ, "GREENROOM_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    best = variants(real)[0]
    assert best.score > 0 and out["active"] == best.name  # nothing assumed about this machine's CPU
    assert len(out["text"].split()) >= 2
    [verdict] = (tmp_path / "kernels").glob(f"{best.name}-*.json")  # checked once, in a subprocess
    assert json.loads(verdict.read_text()) == {"ok": True, "detail": ""}


def test_a_variant_that_crashes_its_self_test_is_passed_over_for_the_next_best(rigged, model, tmp_path, caplog):
    ranked = variants(rigged)
    assert ranked[0].name == "zzz" and {v.name: v.score for v in ranked}["future"] == 0
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        chosen = choose("auto", rigged, model, tmp_path)
    assert chosen == ranked[1]  # the best real variant for this CPU
    [warning] = caplog.records
    assert warning.getMessage() == (
        f"llama.cpp CPU kernels 'zzz' failed the start-up self-test (killed by SIGSEGV); using '{chosen.name}' instead"
    )


def test_the_verdicts_are_cached_so_a_second_start_runs_no_self_test(rigged, model, tmp_path, tested, caplog):
    first = choose("auto", rigged, model, tmp_path)
    assert tested == ["zzz", first.name]
    tested.clear()
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert choose("auto", rigged, model, tmp_path) == first
    assert tested == []  # no subprocess the second time
    assert "'zzz' failed the start-up self-test (killed by SIGSEGV)" in caplog.text  # still said at each start


def test_a_failure_that_is_not_a_crash_is_tested_again_at_the_next_start(real, model, tmp_path, tested):
    folder = beside(real, tmp_path / "variants", {"yyy": EXITING})
    best = variants(folder)[1]
    for _ in range(2):
        assert choose("auto", folder, model, tmp_path / "cache") == best
    assert tested == ["yyy", best.name, "yyy"]  # the pass is kept, the exit status 3 is not


def test_forced_variants_this_cpu_or_build_cannot_run_are_one_short_line(rigged, model, tmp_path):
    with pytest.raises(KernelsError) as unrunnable:
        choose("future", rigged, model, tmp_path)
    assert str(unrunnable.value).startswith('kernels = "future": this CPU cannot run it; use "auto" or one of: zzz, ')
    with pytest.raises(KernelsError) as crashing:
        choose("zzz", rigged, model, tmp_path)
    assert str(crashing.value) == 'kernels = "zzz" failed the start-up self-test (killed by SIGSEGV); use "auto"'
    with pytest.raises(KernelsError) as unknown:
        choose("pentium4", rigged, model, tmp_path)
    assert str(unknown.value).startswith('kernels = "pentium4": no such CPU variant in this llama.cpp build (')
    runnable = variants(rigged)[1]
    assert choose(runnable.name, rigged, model, tmp_path) == runnable  # a name it can run is honoured


def test_the_configured_kernels_reach_the_loader(tmp_path):
    """`[llm] kernels` from bot.toml; a bad name is a UserError, which the command line prints as one line."""
    config = tmp_path / "bot.toml"
    config.write_text('[bot]\ndata_dir = "data"\n[llm]\nkernels = "pentium4"\n')
    script = (
        "import sys\n"
        "from greenroom.compose import Greenroom\n"
        "from greenroom.core.config import load_config\n"
        "from greenroom.errors import UserError\n"
        "try:\n"
        "    Greenroom(load_config(sys.argv[1])).llm\n"
        "except UserError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, config], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('kernels = "pentium4": no such CPU variant in this llama.cpp build (')
    assert "haswell" in done.stdout
