"""A third-party plugin package (one adapter, one command), built and installed from a temporary
folder, found through its entry points, and driven with a message end to end."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from greenroom.compose import describe_plugins

PLUGIN = '''
"""An echo platform (messages come from `hear`) and a /shout command."""
import itertools
from contextlib import asynccontextmanager

from greenroom.core.adapter import SentRef
from greenroom.core.commands import CommandSet, Level
from greenroom.core.events import Actor, ConversationKey, Message

ids = itertools.count(1)


class Replier:
    max_len, edit_interval, placeholder_delay = 4000, 0.0, 0.0

    def __init__(self):
        self.sent = []

    async def send(self, text):
        self.sent.append(text)
        return SentRef(str(len(self.sent) - 1))

    async def edit(self, ref, text):
        self.sent[int(ref.id)] = text

    @asynccontextmanager
    async def typing(self):
        yield

    async def report(self, trace):
        pass


class EchoAdapter:
    name = "echo"

    def __init__(self, host, greeting):
        self.dispatcher, self.greeting, self.ready = host.dispatcher, greeting, False

    async def start(self):
        self.ready = True

    async def watch(self):
        pass

    async def stop_intake(self):
        self.ready = False

    async def close(self):
        pass

    async def hear(self, text, user="ada"):
        """One message in; the bot's answers out."""
        replier = Replier()
        message = Message(id=str(next(ids)), key=ConversationKey("echo", user), author=Actor("echo", user, user),
                          text=text, is_direct=True)
        done = await self.dispatcher.submit(message, replier)
        if done is not None:
            await done
        return replier.sent


def adapter(config):
    settings = config.plugins.get("echo", {})
    if not settings.get("enabled"):
        return None
    return lambda host: EchoAdapter(host, settings["greeting"])


def commands(services):
    found = CommandSet()
    history = services.history

    @found.add("shout", Level.USER, "/shout TEXT", "say it louder")
    async def shout(ctx, args):
        return f"{args.upper()}! ({len(history.recent(str(ctx.message.key), 'wren', 5))} turns so far)"

    return found
'''


def install(tmp_path, monkeypatch, name: str, entry_points: dict[str, str], module: str) -> None:
    """`pip install` of a plugin package (``entry_points``: group -> "module:factory", registered under
    the package's last word) into a folder put on sys.path (the venv stays as it was)."""
    src, target = tmp_path / name, tmp_path / f"site-{name}"
    src.mkdir()
    plugin = name.rsplit("-", 1)[-1]
    registered = "".join(
        f'\n[project.entry-points."{group}"]\n{plugin} = "{value}"\n' for group, value in entry_points.items()
    )
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "0.1.0"\n{registered}'
    )
    (src / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (src / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(module), encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()


@pytest.fixture
def echo_plugin(tmp_path, monkeypatch):
    entry_points = {"greenroom.adapters": "greenroom_echo:adapter", "greenroom.commands": "greenroom_echo:commands"}
    install(tmp_path, monkeypatch, "greenroom-echo", entry_points, PLUGIN)
    yield
    sys.modules.pop("greenroom_echo", None)


async def test_a_third_party_adapter_and_command_are_found_and_serve(echo_plugin, open_app, monkeypatch) -> None:
    for token in ("DISCORD_TOKEN", "TELEGRAM_TOKEN"):
        monkeypatch.delenv(token, raising=False)
    assert "echo" in describe_plugins()["greenroom.adapters"]
    app = open_app('[plugins.echo]\nenabled = true\ngreeting = "hi"\n')
    [echo] = app.adapters()
    await echo.start()
    assert await echo.hear("/shout hello there") == ["HELLO THERE! (0 turns so far)"]
    help_lines = (await echo.hear("/help"))[0].splitlines()
    assert "/shout TEXT: say it louder" in help_lines and "/character list: list the loaded characters" in help_lines
    assert await echo.hear("/nope") == ["Unknown command /nope. Send /help for the list."]


def test_a_plugin_that_is_not_enabled_adds_no_adapter(echo_plugin, open_app, monkeypatch) -> None:
    for token in ("DISCORD_TOKEN", "TELEGRAM_TOKEN"):
        monkeypatch.delenv(token, raising=False)
    assert "echo" in describe_plugins()["greenroom.adapters"]  # installed, found, and off
    assert open_app().adapters() == []


def test_a_plugin_that_does_not_load_is_named_at_start(tmp_path, monkeypatch, config_file, capsys) -> None:
    from greenroom.cli import main

    entry_points = {"greenroom.commands": "greenroom_broken:commands"}
    install(tmp_path, monkeypatch, "greenroom-broken", entry_points, "import libfoo_that_is_not_installed\n")
    assert main(["--config", str(config_file), "plugins"]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith(
        "greenroom: the greenroom.commands plugin 'broken' (greenroom_broken:commands) does not load"
    )
    assert "No module named 'libfoo_that_is_not_installed'" in said


def test_two_packages_claiming_one_plugin_name_are_refused(tmp_path, monkeypatch, config_file, capsys) -> None:
    from greenroom.cli import main

    entry_points = {"greenroom.handlers": "greenroom_persona:persona"}
    install(tmp_path, monkeypatch, "greenroom-persona", entry_points, "def persona(services):\n    return []\n")
    assert main(["--config", str(config_file), "plugins"]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert "both register the greenroom.handlers plugin 'persona': uninstall one" in said
