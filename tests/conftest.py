"""Shared fixtures: real models loaded once per session, a fresh data folder per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "memory" / "demo" / "wren"


def reference_data(name: str) -> Path:
    """A folder of the licensed reference data: skip when absent, fail when the variable points nowhere."""
    configured = os.environ.get("GREENROOM_REFERENCE_DATA")
    base = Path(configured) if configured else ROOT.parent / "shared" / "data"
    if configured and not base.is_dir():
        pytest.fail(f"GREENROOM_REFERENCE_DATA={configured} is set but is not a folder")
    if not base.is_dir():
        pytest.skip(f"reference data not found at {base} (set GREENROOM_REFERENCE_DATA)")
    folder = base / name
    if not folder.exists():
        pytest.fail(f"reference data {folder} is missing")
    return folder


@pytest.fixture(scope="session")
def embedder():
    from greenroom.core.config import EmbedderSection
    from greenroom.models.embedder import Embedder

    c = EmbedderSection()
    return Embedder(c.model, c.device, c.batch_size, c.name)


@pytest.fixture(scope="session")
def llm():
    from greenroom.core.config import LlmSection
    from greenroom.models.llm import LlamaCppLLM

    c = LlmSection()
    return LlamaCppLLM(c.model, c.sha256, n_ctx=c.n_ctx, seed=c.seed)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config for one test: its own data folder, short replies, deterministic sampling."""
    path = tmp_path / "bot.toml"
    path.write_text(
        '[bot]\ndata_dir = "data"\nowners = ["console:local"]\nadmins = ["console:helper", "telegram:9", "discord:9"]\n'
        "[persona]\nmax_reply_tokens = 12\ntemperature = 0.0\n[health]\nport = 0\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def open_app(config_file, embedder, llm):
    """Opens Greenroom apps on ``config_file`` (plus ``extra`` settings appended first) with the
    session's models and the demo character loaded; all closed after the test. ``own_llm``: the
    language model the config names instead of the session's."""
    from greenroom.compose import Greenroom
    from greenroom.core.config import load_config

    made = []

    def open_(extra: str = "", own_llm: bool = False) -> Greenroom:
        if extra:
            config_file.write_text(config_file.read_text() + extra, encoding="utf-8")
        application = Greenroom(load_config(config_file), embedder=embedder, llm=None if own_llm else llm)
        made.append(application)
        application.characters.ensure_default()
        return application

    yield open_
    for application in made:
        application.close()


@pytest.fixture
def app(open_app):
    """A Greenroom with the session's real models and the demo character loaded."""
    return open_app()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny random Valley checkpoint converted for the CPU runtime."""
    from greenroom.models.valley.convert import convert
    from tests.valley_fixture import build_checkpoint

    base = tmp_path_factory.mktemp("valley")
    return convert(build_checkpoint(base / "ck"), base / "cpu", "f32") and base / "cpu"


@pytest.fixture(scope="session")
def tiny_vlm():
    """A tiny random Qwen2-VL with its GGUFs (text, mmproj) from llama.cpp's converter, built once and cached."""
    from tests.vlm_fixture import build_tiny_vlm

    return build_tiny_vlm()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short lossless clips (bytes), a, b and c."""
    from tests.clips import lossless_clip, numbered_frames

    folder = tmp_path_factory.mktemp("clips")
    return {
        n: lossless_clip(folder / f"{n}.mkv", numbered_frames(12, 80, 60, seed=i)).read_bytes()
        for i, n in enumerate(("a", "b", "c"))
    }


@pytest.fixture(scope="session")
def postgres():
    """Debian's PostgreSQL on 127.0.0.1 for the session: skipped where it is not installed, a
    failure in CI (which installs it)."""
    from tests.servers import postgres_server

    try:
        with postgres_server() as url:
            yield url
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e}; .ci/run installs it")
        pytest.skip(str(e))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The persistence tests run on both: a SQLite file, and a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'greenroom.sqlite3'}"
    from tests.servers import new_database

    return new_database(request.getfixturevalue("postgres"), f"t{abs(hash(request.node.nodeid)):x}")
