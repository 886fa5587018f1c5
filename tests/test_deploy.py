"""The files in deploy/, checked as far as this machine allows: no Docker daemon or registry here,
so the Dockerfiles and compose file are parsed and their references checked; the systemd units go
through `systemd-analyze verify` where it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from greenroom.core.config import Config, HealthSection

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_copy_what_exists_run_as_a_user_and_check_health(name) -> None:
    steps = instructions(DEPLOY / name)
    known = {"FROM", "RUN", "COPY", "WORKDIR", "ENV", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "CMD"}
    assert {op for op, _ in steps} <= known and steps[0][0] == "FROM"
    copied = [source for op, args in steps if op == "COPY" for source in args.split()[:-1]]
    for source in copied:
        assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"
    assert {"pyproject.toml", "setup.py", "greenroom", "bots", "core", "memory", "models"} <= set(copied)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [op for op, _ in steps].index("USER") > max(i for i, (op, _) in enumerate(steps) if op == "RUN")
    [check] = [args for op, args in steps if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{HealthSection().port}/healthz" in check
    assert f"EXPOSE {HealthSection().port}" in [f"{op} {args}" for op, args in steps]
    assert any("bootstrap.sh" in args for op, args in steps if op == "RUN")  # the models from the index


def test_compose_services_wait_for_what_they_need() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"bot", "postgres", "qdrant", "llm", "redis", "video-worker"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("$", ".", "/")) or source in compose["volumes"], f"{name}: {volume}"
    bot = services["bot"]
    assert bot["depends_on"] == {s: {"condition": "service_healthy"} for s in ("postgres", "qdrant", "llm")}
    assert all("healthcheck" in services[s] for s in ("postgres", "qdrant", "llm", "redis"))
    assert (DEPLOY / bot["env_file"].replace(".env", ".env.example")).is_file()
    for key in bot["environment"]:  # GREENROOM__SECTION__KEY overrides name real settings
        section, setting = key.removeprefix("GREENROOM__").lower().split("__")
        assert setting in type(getattr(Config(), section)).model_fields, key


def test_the_env_example_lists_every_secret_the_config_names() -> None:
    names = {
        line.split("=")[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    secrets = {
        value for section in Config().model_dump().values() for key, value in section.items() if key.endswith("_env")
    }
    assert secrets <= names
    assert all(
        not line.split("=", 1)[1]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line.split("=")[0] in secrets
    )  # no values in the example


def verify(unit: Path) -> str:
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f" (exit {result.returncode})")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path) -> None:
    """The units as installed under /opt/greenroom, pointed at this checkout (verify wants the programs)."""
    assert (ROOT / ".venv" / "bin" / "greenroom").exists()
    for name, as_name in [
        ("greenroom.service", "greenroom.service"),
        ("greenroom-video-worker@.service", "greenroom-video-worker@1.service"),
    ]:
        text = (DEPLOY / name).read_text().replace("/opt/greenroom", str(ROOT))
        assert "Restart=on-failure" in text and "KillSignal=SIGTERM" in text
        (tmp_path / as_name).write_text(text)
        assert verify(tmp_path / as_name) == ""
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    assert "restart specifier" in verify(tmp_path / "broken.service")  # the check does catch mistakes
