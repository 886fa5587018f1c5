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
    """Test users: `local` is the configured owner, `helper` a configured bot admin, `mod` an admin of
    the chat on its platform, `pat` a user."""
    return {
        Level.OWNER: {"user": "local"},
        Level.ADMIN: {"user": "helper"},
        Level.CHAT_ADMIN: {"user": "mod", "admin": True},
        Level.USER: {"user": "pat"},
    }


@pytest.mark.parametrize(
    "command,needed",
    [
        ("/character list", Level.USER),
        ("/character info", Level.USER),
        ("/status", Level.USER),
        ("/character use wren", Level.CHAT_ADMIN),
        ("/mode all", Level.CHAT_ADMIN),
        ("/reset all", Level.CHAT_ADMIN),
        ("/deny user someone", Level.CHAT_ADMIN),
        ("/factcheck on", Level.CHAT_ADMIN),
        ("/factcheck threshold 0.5", Level.CHAT_ADMIN),
        ("/character reload wren", Level.ADMIN),
        ("/character load https://cards.example/x.json", Level.ADMIN),
        ("/allow chat", Level.ADMIN),
        ("/deny everywhere someone", Level.ADMIN),
        ("/character load /etc/greenroom", Level.OWNER),
        ("/character remove nobody", Level.OWNER),
    ],
)
async def test_every_command_checks_its_level_and_scope(app, ranks, command, needed):
    scopes = {Level.CHAT_ADMIN: "in this chat", Level.ADMIN: "(bot-wide)", Level.OWNER: "(bot-wide)"}
    for level, who in ranks.items():
        [answer] = (await say(app, command, **who)).messages
        refused = " needs " in answer and "; you are " in answer
        assert refused == (level < needed), (level, answer)
        # loading from a path: below bot admin, the first refusal is that no load at all is allowed
        named = Level.ADMIN if command.startswith("/character load /") and level < Level.ADMIN else needed
        if refused:
            assert f"needs {named.label} level {scopes[named]}; you are {level.label}" in answer


async def test_mode_decides_what_the_bot_answers_in_a_group(app):
    group = {"chat": "club", "direct": False}
    assert (await say(app, "anyone here?", **group)).messages == []  # default: mention only
    assert (await say(app, "hello bot", mention=True, **group)).messages
    await say(app, "/mode all", user="local", **group)
    assert (await say(app, "anyone here?", **group)).messages
    await say(app, "/mode off", user="local", **group)
    assert (await say(app, "hello bot", mention=True, **group)).messages == []
    assert (await say(app, "/status", **group)).messages  # commands still work


async def test_deny_and_allow_lists_hold_where_they_were_set(app):
    await say(app, "/deny user pat", user="mod", admin=True)  # a chat admin: in this chat only
    assert (await say(app, "/status", user="pat")).messages == []  # ignored here
    assert (await say(app, "/status", user="pat", chat="c2")).messages  # still served elsewhere
    assert (await say(app, "/status", user="sam")).messages
    await say(app, "/allow user sam", user="mod", admin=True)
    assert (await say(app, "/status", user="kim")).messages == []  # an allow list now exists here
    assert (await say(app, "/status", user="kim", chat="c2")).messages  # not there
    assert (await say(app, "/status", user="sam")).messages
    assert (await say(app, "/status", user="mod", admin=True)).messages  # the chat's admins always pass
    await say(app, "/deny everywhere kim", user="helper")  # a bot admin: every chat
    assert (await say(app, "/status", user="kim", chat="c2")).messages == []
    assert (await say(app, "/status", user="kim", chat="c3")).messages == []


async def test_reload_picks_up_changes_and_admin_actions_are_audited(app, tmp_path):
    folder = tmp_path / "kit"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("You are Kit.")
    (folder / "texts" / "a.txt").write_text("Kit:「The lamp is lit.」")
    [loaded] = (await say(app, f"/character load {folder}", user="local")).messages
    assert loaded.startswith("Loaded kit (kit): 1 stories")
    (folder / "texts" / "b.txt").write_text("Kit:「Storm tonight.」")
    [reloaded] = (await say(app, "/character reload kit", user="helper")).messages
    assert reloaded.startswith("Reloaded kit: 2 stories")
    (folder / "texts" / "b.txt").write_bytes(b"\xff\xfe\x00binary")  # a broken edit
    [failed] = (await say(app, "/character reload kit", user="helper")).messages
    assert failed.endswith("(the version loaded before is still answering)"), failed
    assert app.library.search("kit", "Storm tonight", 1)[0].story.text == "Kit:「Storm tonight.」"
    await say(app, "/character use kit", user="pat")  # refused: not audited
    entries = app.audit.entries()
    assert [(e.who, e.command, e.scope) for e in entries] == [
        ("console:local", "character load", "bot"),
        ("console:helper", "character reload", "bot"),
        ("console:helper", "character reload", "bot"),
    ]
    assert entries[1].place == "console:c1" and entries[1].outcome.startswith("Reloaded") and entries[1].at
    assert entries[2].outcome.startswith("failed: ")


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
