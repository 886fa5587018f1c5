"""End to end through `greenroom chat`: real Qdrant Edge, real MiniLM, real SmolLM2 GGUF."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from greenroom.cli import main
from greenroom.memory.characters import load_chatharuhi_folder
from tests.conftest import DEMO, ROOT


def chat(
    capsys, config: Path, *messages: str, user: str | None = None, env: dict | None = None, monkeypatch=None
) -> list[dict]:
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    args = ["--config", str(config), "chat", "--json"] + (["--user", user] if user else [])
    for m in messages:
        args += ["--message", m]
    assert main(args) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_reply_record_shows_the_prompt_as_sent(capsys, config_file):
    first, second = chat(capsys, config_file, "Why do you leave that light on at night?", "And the tea?")
    assert first["character"] == "wren" and first["reply"]
    assert first["stories"][0]["id"] == "11_the_ghost_light.txt"
    assert {"id", "text", "score", "tokens"} <= set(first["stories"][0])
    system = first["messages"][0]
    assert system["role"] == "system" and "Wren Ashby" in system["content"]
    last = first["messages"][-1]
    assert last["role"] == "user" and first["stories"][0]["text"] in last["content"]  # this turn's scenes
    assert last["content"].endswith("\nWhy do you leave that light on at night?")
    assert first["stories"][0]["text"] not in system["content"]  # the system prompt stays the same each turn
    assert first["prompt_tokens"] > 100 and first["history_turns"] == 0
    assert second["history_turns"] == 1
    assert first["notices"] == [load_chatharuhi_folder(DEMO).greeting]  # the character speaks first, once
    assert "notices" not in second
    assert second["messages"][1:3] == [
        {"role": "user", "content": "Why do you leave that light on at night?"},
        {"role": "assistant", "content": first["reply"]},
    ]


def test_history_survives_a_restart_and_reset_clears_it(capsys, config_file):
    chat(capsys, config_file, "Hello Wren.")
    [after_restart] = chat(capsys, config_file, "Do you remember me?")
    assert after_restart["history_turns"] == 1
    reset, fresh = chat(capsys, config_file, "/reset", "Hello again.")
    assert reset["reply"].startswith("Forgot our conversation (2 turns)")
    assert fresh["history_turns"] == 0 and fresh["character"] == "wren"


def test_faithful_mode_and_iam(capsys, config_file, monkeypatch):
    env = {"GREENROOM__PERSONA__MODE": '"haruhi2"'}
    named, turn = chat(capsys, config_file, "/iam Tom", "Can I whistle backstage?", env=env, monkeypatch=monkeypatch)
    assert named["reply"] == "In the story you are now Tom."
    assert turn["mode"] == "haruhi2"
    assert turn["messages"][-1] == {"role": "user", "content": "Tom:「Can I whistle backstage?」"}
    assert turn["messages"][1]["content"].startswith("Classic scenes for the role are as follows:\n")
    assert "\n###\n" in turn["messages"][1]["content"]


def test_admin_commands_need_admin_level(capsys, config_file):
    refused, listed = chat(capsys, config_file, "/character use wren", "/character list", user="alice")
    assert refused["reply"] == "/character use needs chat admin level in this chat; you are user."
    assert "* wren: Wren Ashby" in listed["reply"]
    [helped] = chat(capsys, config_file, "/help", user="alice")
    assert "/reset" in helped["reply"] and "/character list" in helped["reply"]
    assert "/character use" not in helped["reply"] and "/mode" not in helped["reply"]
    [owner_help] = chat(capsys, config_file, "/help")
    assert "/character remove" in owner_help["reply"] and "/mode" in owner_help["reply"]


def test_bad_input_in_chat_gets_specific_answers(capsys, config_file):
    unknown, bogus, long = chat(capsys, config_file, "/character use nobody", "/frobnicate", "word " * 1000)
    assert unknown["reply"] == "no character named 'nobody' (see /character list)"
    assert bogus["reply"] == "Unknown command /frobnicate. Send /help for the list."
    assert "(Your message is 4999 characters; I read only the first 2000.)" in long["notices"]
    assert long["messages"][-1]["content"].endswith("\n" + ("word " * 1000)[:2000])  # after the scenes


def test_character_management_from_the_command_line(capsys, config_file, tmp_path):
    folder = tmp_path / "kit"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("You are Kit, a lighthouse keeper.", encoding="utf-8")
    (folder / "texts" / "storm.txt").write_text("Kit:「The lamp must burn all night.」", encoding="utf-8")
    cfg = ["--config", str(config_file)]
    assert main(cfg + ["character", "load", str(folder)]) == 0
    assert "loaded kit (kit): 1 stories" in capsys.readouterr().out
    assert main(cfg + ["character", "load", str(folder)]) == 0
    assert "already loaded with the same content" in capsys.readouterr().out
    assert main(cfg + ["character", "list", "--json"]) == 0
    assert {r["id"] for r in json.loads(capsys.readouterr().out)} == {"kit"}
    used, turn = chat(capsys, config_file, "/character use kit", "Is the lamp lit?")
    assert used["reply"] == "This chat now talks to kit." and turn["character"] == "kit"
    assert main(cfg + ["character", "remove", "kit"]) == 0
    assert capsys.readouterr().out.strip() == "removed kit"
    [back] = chat(capsys, config_file, "Hello?")
    assert back["character"] == "wren"  # chats that used it fall back to the default


@pytest.mark.parametrize(
    "setup,expected",
    [
        ("missing_model", "greenroom: model file not found"),
        ("corrupt_model", "not a GGUF model file"),
        ("data_dir_is_a_file", "is not writable"),
        ("bad_key", "unknown key 'llm.modle'"),
    ],
)
def test_startup_problems_are_one_clear_line(capsys, tmp_path, setup, expected):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\0" * 1000)
    body = {
        "missing_model": f'[llm]\nmodel = "{tmp_path}/nope.gguf"\nsha256 = ""\n',
        "corrupt_model": f'[llm]\nmodel = "{junk}"\nsha256 = ""\n',
        "data_dir_is_a_file": f'[bot]\ndata_dir = "{blocker}/data"\n',
        "bad_key": '[llm]\nmodle = "x"\n',
    }[setup]
    config = tmp_path / "bot.toml"
    config.write_text(body, encoding="utf-8")
    assert main(["--config", str(config), "chat", "--message", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_bad_character_folder_is_refused_and_the_library_is_unchanged(capsys, config_file, tmp_path):
    chat(capsys, config_file, "hi")
    broken = tmp_path / "broken"
    (broken / "texts").mkdir(parents=True)
    (broken / "system_prompt.txt").write_text("x")
    (broken / "texts" / "a.txt").write_bytes(b"\xff\xfe\x00binary")
    assert main(["--config", str(config_file), "character", "load", str(broken), "--name", "wren"]) == 2
    assert "texts/a.txt: binary file" in capsys.readouterr().err
    [turn] = chat(capsys, config_file, "Why is your tea cold?")
    assert turn["character"] == "wren" and turn["stories"]


def test_ctrl_c_stops_a_reply_without_saving_it(config_file):
    env = {**os.environ, "GREENROOM__PERSONA__MAX_REPLY_TOKENS": "400", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "greenroom"), "--config", str(config_file), "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out = b""
    while not out.endswith(b"you> "):
        out += proc.stdout.read(1)
    proc.stdin.write(b"Tell me a very long story about the theatre.\n")
    proc.stdin.flush()
    first = proc.stdout.read(1)  # the reply has started streaming
    proc.send_signal(signal.SIGINT)
    rest = b""
    while not rest.endswith(b"you> "):
        rest += proc.stdout.read(1)
    tail, err = proc.communicate(timeout=60)  # closes stdin: end of input quits
    assert first and b"[interrupted: that reply was stopped and not saved]" in rest
    assert tail.strip().endswith(b"bye") and proc.returncode == 0, err
    [turn] = [
        json.loads(line)
        for line in subprocess.run(
            [
                str(Path(sys.executable).parent / "greenroom"),
                "--config",
                str(config_file),
                "chat",
                "--json",
                "--message",
                "hello",
            ],
            capture_output=True,
            check=True,
            cwd=ROOT,
        ).stdout.splitlines()
    ]
    assert turn["history_turns"] == 0


def test_export_then_import_round_trips_with_stored_vectors(capsys, config_file, tmp_path, monkeypatch):
    cfg = ["--config", str(config_file)]
    [before] = chat(capsys, config_file, "Why do you leave that light on at night?")
    out = tmp_path / "wren.jsonl"
    assert main(cfg + ["character", "export", "wren", str(out), "--format", "chatharuhi-jsonl"]) == 0
    assert "wrote 34 stories of wren" in capsys.readouterr().out
    assert main(cfg + ["character", "load", str(out), "--name", "wren2"]) == 0
    assert "reused the stored 'all_minilm_l6_v2' vectors" in capsys.readouterr().out
    used, after = chat(capsys, config_file, "/character use wren2", "Why do you leave that light on at night?")
    assert after["character"] == "wren2"
    assert [s["text"] for s in after["stories"]] == [s["text"] for s in before["stories"]]
    assert after["messages"][0] == before["messages"][0]  # the same prompt


def test_memory_moves_from_the_embedded_store_to_a_qdrant_server(capsys, config_file, tmp_path):
    """The documented move: export from the embedded store, import into a server; the scenes are found there."""
    from tests.fakes.qdrant_server import serving

    cfg = ["--config", str(config_file)]
    out = tmp_path / "memory.jsonl"
    assert main(cfg + ["character", "load", str(DEMO)]) == 0
    assert main(cfg + ["memory", "export", str(out)]) == 0
    assert "wrote 1 indexes" in capsys.readouterr().out
    with serving() as server:
        config_file.write_text(
            config_file.read_text() + f'[memory]\nqdrant_url = "http://127.0.0.1:{server.port}"\n', encoding="utf-8"
        )
        assert main(cfg + ["memory", "import", str(out)]) == 0
        assert capsys.readouterr().out.startswith("imported 1 indexes")
        [after] = chat(capsys, config_file, "Why do you leave that light on at night?")
    assert after["stories"][0]["id"] == "11_the_ghost_light.txt"


def test_an_unexpected_failure_prints_an_error_id_not_the_exception(capsys, config_file, tmp_path, monkeypatch):
    def broken(store, path):
        raise RuntimeError("internal state 0xdead")

    monkeypatch.setattr("greenroom.memory.transfer.export_store", broken)
    assert main(["--config", str(config_file), "memory", "export", str(tmp_path / "out.jsonl")]) == 1
    *logged, said = capsys.readouterr().err.strip().splitlines()  # the log goes to stderr too, before it
    assert "0xdead" not in said and said.startswith("greenroom: something went wrong (error id ")
    error_id = said.split("error id ", 1)[1].split(")")[0]
    [record] = [json.loads(line) for line in logged if error_id in line]
    assert "Traceback" in record["error"] and "RuntimeError: internal state 0xdead" in record["error"]
