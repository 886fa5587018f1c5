"""Packaging: the wheel claims the one top-level name `greenroom`, carries its data files, and both
`greenroom …` and `python -m greenroom …` start."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_tree(into: Path) -> Path:
    """The project's files as a clean clone has them (tracked, plus new files git does not ignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    return into


def test_the_wheel_installs_only_the_greenroom_name(tmp_path) -> None:
    src = source_tree(tmp_path / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("greenroom-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"greenroom", wheel.name.split("-py")[0] + ".dist-info"}
    for expected in (
        "greenroom/cli.py",
        "greenroom/core/dispatch.py",
        "greenroom/bots/telegram/__init__.py",
        "greenroom/memory/demo/wren/character.toml",
        "greenroom/memory/demo/wren/texts/06_cold_tea.txt",
        "greenroom/models/fakenews/default/detector.json",
        "greenroom/models/valley/model.py",
    ):
        assert expected in names
    py_files = {
        str(p.relative_to(ROOT))
        for folder in ("bots", "core", "memory", "models")
        for p in (ROOT / folder).rglob("*.py")
    }
    assert {f"greenroom/{p}" for p in py_files} <= set(names)  # no module left behind


def test_both_ways_to_start_the_command_line() -> None:
    for command in (
        [str(Path(sys.executable).parent / "greenroom"), "--help"],
        [sys.executable, "-m", "greenroom", "--help"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=120)
        assert done.returncode == 0 and "usage: greenroom" in done.stdout
