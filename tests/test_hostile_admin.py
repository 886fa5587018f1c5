"""A hostile group owner: an admin of one Telegram group or Discord server, nowhere else, runs every
command there through the real client libraries. Chat-scoped commands act in that chat only;
bot-wide ones are refused with the level and scope they need; every other chat is still served."""

from __future__ import annotations

import json

import pytest

from greenroom.core.commands import ACL_CHATS, ACL_USERS, Level
from greenroom.memory.lorebook_store import CHAT
from tests.fakes.discord_api import ADMIN_ROLE, CHANNEL, FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import answer_with, running
from tests.test_discord import adapter_for as discord_adapter
from tests.test_telegram import adapter_for as telegram_adapter

HOSTILE = "8"
VICTIM = "1001"


def every_command(host_folder: str) -> dict[str, tuple[str, bool]]:
    """Each command path -> (what the hostile owner sends, whether it may run in their chat)."""
    return {
        "help": ("/help", True),
        "status": ("/status", True),
        "iam": ("/iam The Owner", True),
        "reset": ("/reset", True),
        "reset all": ("/reset all", True),
        "forget": ("/forget", True),
        "forget all": ("/forget all", True),
        "mode": ("/mode all", True),
        "character list": ("/character list", True),
        "character info": ("/character info", True),
        "character use": ("/character use wren", True),
        "character load": (f"/character load {host_folder} --name loot", False),
        "character reload": ("/character reload wren", False),
        "character remove": ("/character remove wren", False),
        "lore list": ("/lore list", True),
        "lore info": ("/lore info realm", True),
        "lore load": ("/lore load --character wren", False),
        "lore remove": ("/lore remove realm", False),  # bot-wide, not used in their chat
        "lore use": ("/lore use realm", True),
        "allow user": (f"/allow user {HOSTILE}", True),
        "deny user": (f"/deny user {VICTIM}", True),
        "allow chat": ("/allow chat", False),
        "deny chat": ("/deny chat 5555", False),
        "allow everywhere": (f"/allow everywhere {HOSTILE}", False),
        "deny everywhere": (f"/deny everywhere {VICTIM}", False),
        "factcheck": ("/factcheck", True),
        "factcheck on": ("/factcheck on", True),
        "factcheck off": ("/factcheck off", True),
        "factcheck threshold": ("/factcheck threshold 0.1", True),
        "video ask": ("/video ask What is in it?", True),
    }


@pytest.fixture
def app(open_app, tmp_path):
    """One user sends every command at once here: no per-user rate limit, a lane deep enough for them.
    A bot-wide lorebook, `realm`, is loaded."""
    app = open_app("[dispatch]\nuser_rate_per_minute = 0\nlane_depth = 64\n")
    book = tmp_path / "realm.json"
    book.write_text(json.dumps({"entries": {"0": {"uid": 0, "key": ["realm"], "content": "The realm is old."}}}))
    app.lorebooks.load(book)
    return app


@pytest.fixture
def host_folder(tmp_path):
    """A valid character folder on the bot's own machine, which a chat admin must not reach."""
    folder = tmp_path / "host" / "loot"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("You are Loot.")
    (folder / "texts" / "a.txt").write_text("Loot:「Mine now.」")
    return str(folder)


def check_answers(app, answers: list[str], own_chat: str) -> None:
    commands = every_command("")
    assert set(commands) == {c.path for c in app.commands.visible_to(Level.OWNER)}  # a new command joins this test
    for (path, (_, allowed)), answer in zip(commands.items(), answers, strict=True):
        refused = " needs " in answer and "; you are chat admin here" in answer
        assert refused != allowed, (path, answer)
        if refused:
            assert "(bot-wide)" in answer, answer
    assert app.library.ids() == ["wren"]  # nothing loaded from the host folder, nothing removed
    assert app.settings.scope(ACL_USERS) == {} and app.settings.scope(ACL_CHATS) == {}  # no bot-wide list
    assert app.settings.get(own_chat, "mode") == "all"  # what the owner may do, done in their chat
    assert [b.uses for b in app.lorebooks.visible(None)] == [((CHAT, own_chat),)]  # on no character
    scopes = {(e.command, e.scope) for e in app.audit.entries()}
    assert ("mode", "chat") in scopes and ("deny user", "chat") in scopes


async def test_a_hostile_telegram_group_owner_stays_in_their_group(app, host_folder):
    async def echo(ctx):
        await ctx.say(f"served {ctx.message.key}")

    answer_with(app, echo)
    async with FakeTelegram() as fake, running(telegram_adapter(app, fake)):
        group, other_group = -100, -200
        fake.admins[group] = [int(HOSTILE)]
        commands = every_command(host_folder)
        for text, _ in commands.values():
            await fake.push(fake.message(text, chat_id=group, chat_type="group", user_id=int(HOSTILE)))
        answers = [c.params["text"] for c in await fake.wait_for("sendMessage", len(commands))]
        check_answers(app, answers, f"telegram:{group}")
        # the victim is still served in private, and other groups keep their own settings
        await fake.push(fake.message("hello", chat_id=int(VICTIM), user_id=int(VICTIM)))
        await fake.push(fake.message("hi all", chat_id=other_group, chat_type="group", user_id=int(VICTIM)))
        await fake.push(
            fake.message(
                "@wren_bot hi",
                chat_id=other_group,
                chat_type="group",
                user_id=int(VICTIM),
                entities=[{"type": "mention", "offset": 0, "length": 9}],
            )
        )
        replies = await fake.wait_for("sendMessage", len(commands) + 2)
        tail = [c.params["text"] for c in replies[len(commands) :]]
        assert tail == [f"served telegram:{VICTIM}", f"served telegram:{other_group}"]  # "hi all": mention mode
        await fake.push(fake.message("hello again", chat_id=group, chat_type="group", user_id=int(VICTIM)))
        await app.dispatcher.idle()
        assert len(fake.sent("sendMessage")) == len(commands) + 2  # denied in the owner's group only


async def test_a_hostile_discord_server_admin_stays_in_their_server(app, host_folder):
    async def echo(ctx):
        await ctx.say(f"served {ctx.message.key}")

    answer_with(app, echo)
    async with FakeDiscord() as fake, running(discord_adapter(app, fake)):
        await fake.add_guild(admin_ids=(HOSTILE,))
        commands = every_command(host_folder)
        for text, _ in commands.values():
            await fake.dispatch(
                "MESSAGE_CREATE", fake.message(text, author=HOSTILE, guild=True, mention=True, roles=(ADMIN_ROLE,))
            )
        calls = await fake.wait_for("POST", f"/channels/{CHANNEL}/messages", len(commands))
        answers = [c.body["content"] for c in calls]
        check_answers(app, answers, f"discord:{CHANNEL}")
        await fake.dispatch("MESSAGE_CREATE", fake.message("hello", author=VICTIM))  # a direct message
        [dm] = await fake.wait_for("POST", "/channels/400/messages")
        assert dm.body["content"] == "served discord:400"
