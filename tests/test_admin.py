"""Admin side of the chat: levels per command, /mode, /allow and /deny, /character reload, the audit log."""

import dataclasses
import json

import pytest

from greenroom.core.commands import Level
from greenroom.core.events import Attachment, AttachmentKind
from tests.helpers import RecordingReplier, message


async def say(app, text: str, **kw) -> RecordingReplier:
    replier = RecordingReplier()
    done = await app.dispatcher.submit(message(text, platform="console", **kw), replier)
    if done is not None:
        await done
    return replier


@pytest.fixture
def ranks(app):
    """Test users: `local` is the configured owner, `mod` a platform admin, `pat` a user."""
    return {"owner": {"user": "local"}, "admin": {"user": "mod", "admin": True}, "user": {"user": "pat"}}


@pytest.mark.parametrize(
    "command,needed",
    [
        ("/character list", Level.USER),
        ("/character info", Level.USER),
        ("/status", Level.USER),
        ("/character use wren", Level.ADMIN),
        ("/character reload wren", Level.ADMIN),
        ("/mode all", Level.ADMIN),
        ("/allow chat", Level.ADMIN),
        ("/deny user someone", Level.ADMIN),
        ("/reset all", Level.ADMIN),
        ("/character remove nobody", Level.OWNER),
    ],
)
async def test_every_command_checks_its_level(app, ranks, command, needed):
    for rank, who in ranks.items():
        level = Level[rank.upper()]
        [answer] = (await say(app, command, **who)).messages
        refused = "needs" in answer and "level; you are" in answer
        assert refused == (level < needed), (rank, answer)
        if refused:
            assert answer.endswith(f"needs {needed.label} level; you are {level.label}.")


async def test_mode_decides_what_the_bot_answers_in_a_group(app):
    group = {"chat": "club", "direct": False}
    assert (await say(app, "anyone here?", **group)).messages == []  # default: mention only
    assert (await say(app, "hello bot", mention=True, **group)).messages
    await say(app, "/mode all", user="local", **group)
    assert (await say(app, "anyone here?", **group)).messages
    await say(app, "/mode off", user="local", **group)
    assert (await say(app, "hello bot", mention=True, **group)).messages == []
    assert (await say(app, "/status", **group)).messages  # commands still work


async def test_deny_and_allow_lists(app):
    await say(app, "/deny user pat", user="local")
    assert (await say(app, "/status", user="pat")).messages == []  # ignored
    assert (await say(app, "/status", user="sam")).messages
    await say(app, "/allow user sam", user="local")
    assert (await say(app, "/status", user="kim")).messages == []  # an allow list now exists
    assert (await say(app, "/status", user="sam")).messages
    assert (await say(app, "/status", user="mod", admin=True)).messages  # admins always pass


async def test_reload_picks_up_changes_and_admin_actions_are_audited(app, tmp_path):
    folder = tmp_path / "kit"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("You are Kit.")
    (folder / "texts" / "a.txt").write_text("Kit:「The lamp is lit.」")
    [loaded] = (await say(app, f"/character load {folder}", user="local")).messages
    assert loaded.startswith("Loaded kit (kit): 1 stories")
    (folder / "texts" / "b.txt").write_text("Kit:「Storm tonight.」")
    [reloaded] = (await say(app, "/character reload kit", user="mod", admin=True)).messages
    assert reloaded.startswith("Reloaded kit: 2 stories")
    await say(app, "/character use kit", user="pat")  # refused: not audited
    entries = app.audit.entries()
    assert [(e["who"], e["command"]) for e in entries] == [
        ("console:local", "character load"),
        ("console:mod", "character reload"),
    ]
    assert entries[1]["where"] == "console:c1" and entries[1]["outcome"].startswith("Reloaded") and entries[1]["when"]


def card_file(name: str, description: str) -> Attachment:
    """A V2 card sent in chat as `character.json` (every card here has that file name)."""
    data = json.dumps(
        {
            "spec": "chara_card_v2",
            "spec_version": "2.0",
            "data": {"name": name, "description": description, "first_mes": ""},
        }
    ).encode()

    async def fetch() -> bytes:
        return data

    return Attachment(AttachmentKind.FILE, "character.json", len(data), 1_000_000, mime="application/json", fetch=fetch)


async def test_uploads_with_the_same_file_name_are_kept_apart(app):
    async def upload(attachment: Attachment) -> str:
        replier = RecordingReplier()
        msg = dataclasses.replace(
            message("/character load", platform="console", user="local"), attachments=(attachment,)
        )
        await (await app.dispatcher.submit(msg, replier))
        return replier.messages[-1]

    assert (await upload(card_file("Mira", "A lighthouse keeper."))).startswith("Loaded Mira (mira)")
    assert (await upload(card_file("Otto", "The stage door keeper."))).startswith("Loaded Otto (otto)")
    assert (await say(app, "/character reload mira", user="local")).messages == ["Mira is unchanged."]
    mira, _ = app.library.character("mira")
    assert mira.system_prompt.count("lighthouse") and "stage door" not in mira.system_prompt
