"""The Discord adapter: the real discord.py against a fake REST API and gateway on 127.0.0.1."""

from __future__ import annotations

import pytest

from greenroom.bots.common import AdapterError
from greenroom.bots.discord import DiscordAdapter
from greenroom.core.config import DiscordSection
from greenroom.core.dispatch import DECLINED
from greenroom.core.events import Actor, ConversationKey, Message
from tests.fakes.discord_api import ADMIN_ROLE, CHANNEL, THREAD, FakeDiscord
from tests.helpers import answer_with, assert_throttled, running, slow_model


@pytest.fixture
async def fake():
    async with FakeDiscord() as server:
        yield server


def adapter_for(app, fake: FakeDiscord, **settings) -> DiscordAdapter:
    settings.setdefault("placeholder_delay", 0.0)
    return DiscordAdapter(
        app.host, DiscordSection(api_base=fake.api_base, gateway_url=fake.gateway_url, **settings), "fake-token"
    )


@pytest.fixture
async def discord_bot(app, fake):
    async with running(adapter_for(app, fake)) as adapter:
        await fake.add_guild(admin_ids=("8",))
        yield adapter


def posts(fake: FakeDiscord, channel: str = CHANNEL) -> list[str]:
    return [c.body["content"] for c in fake.sent("POST", f"/channels/{channel}/messages")]


async def test_group_persona_reply_knows_who_said_what(app, fake, discord_bot):
    await fake.dispatch("MESSAGE_CREATE", fake.message("I'm new to the crew.", author="7", guild=True, mention=True))
    await fake.dispatch(
        "MESSAGE_CREATE",
        fake.message("Where do the props go?", author="8", guild=True, mention=True, roles=(ADMIN_ROLE,)),
    )
    calls = await fake.wait_for("POST", f"/channels/{CHANNEL}/messages", 3)  # greeting + two replies
    await app.dispatcher.idle()
    assert "I run the backstage" in calls[0].body["content"]
    assert all(c.body["allowed_mentions"] == {"parse": [], "replied_user": False} for c in calls)
    assert calls[0].body["message_reference"]["channel_id"] == int(CHANNEL)
    assert fake.sent("POST", f"/channels/{CHANNEL}/typing")
    probe = Message(
        id="x",
        key=ConversationKey("discord", CHANNEL),
        author=Actor("discord", "9", "User9"),
        text="And me?",
        mentions_bot=True,
    )
    prompt = app.persona.prepare(probe, probe.text).prompt
    said = [m["content"] for m in prompt.messages if m["role"] == "user"]
    assert any(s.startswith("User7: I'm new to the crew.") for s in said)
    assert any(s.startswith("User8: Where do the props go?") for s in said)


async def test_group_message_without_mention_is_ignored(app, fake, discord_bot):
    async def echo(ctx):
        await ctx.say(f"echo {ctx.message.text} @everyone")

    answer_with(app, echo)
    await fake.dispatch("MESSAGE_CREATE", fake.message("talking among ourselves", guild=True))
    await fake.dispatch("MESSAGE_CREATE", fake.message("over here", guild=True, mention=True))
    await fake.wait_for("POST", f"/channels/{CHANNEL}/messages")
    await app.dispatcher.idle()
    assert posts(fake) == ["echo over here @everyone"]
    assert fake.sent("POST", "/messages")[0].body["allowed_mentions"]["parse"] == []  # no @everyone ping


async def test_threads_are_separate_conversations(app, fake, discord_bot):
    keys = []

    async def record(ctx):
        keys.append(str(ctx.message.key))
        await ctx.say("ok")

    answer_with(app, record)
    await fake.dispatch("MESSAGE_CREATE", fake.message("in the channel", guild=True, mention=True))
    await fake.dispatch("MESSAGE_CREATE", fake.message("in the thread", channel=THREAD, guild=True, mention=True))
    await fake.wait_for("POST", f"/channels/{THREAD}/messages")
    await app.dispatcher.idle()
    assert keys == [f"discord:{CHANNEL}", f"discord:{CHANNEL}/{THREAD}"]


async def test_long_reply_is_split_at_2000_without_breaking_code(app, fake, discord_bot):
    code = "```python\n" + "\n".join(f"print({i})" for i in range(400)) + "\n```"

    async def long(ctx):
        await ctx.stream().finish(code)

    answer_with(app, long)
    await fake.dispatch("MESSAGE_CREATE", fake.message("show me the script"))
    await fake.wait_for("POST", "/channels/400/messages", 3)
    await app.dispatcher.idle()
    parts = posts(fake, "400")
    assert all(len(p) <= 2000 and p.startswith("```python\n") and p.endswith("```") for p in parts)


async def test_streamed_reply_edits_are_throttled(app, fake):
    words = [f"line{i} " for i in range(40)]
    answer_with(app, slow_model(words, lambda: fake.wait_for("POST", "/channels/400/messages")))
    async with running(adapter_for(app, fake, edit_interval=0.3)):
        await fake.dispatch("MESSAGE_CREATE", fake.message("stream please"))
        await fake.wait_for("POST", "/channels/400/messages")
        await app.dispatcher.idle()
    edits = fake.sent("PATCH", "/channels/400/messages/")
    assert_throttled([e.at for e in edits], 0.3)
    assert edits[-1].body["content"] == "".join(words).strip()
    assert len(posts(fake, "400")) == 1  # one message, edited in place


def video(fake: FakeDiscord, name: str, data: bytes, size: int | None = None) -> dict:
    url = fake.add_file(name, data)
    return {
        "id": "77",
        "filename": name,
        "size": len(data) if size is None else size,
        "url": url,
        "proxy_url": url,
        "content_type": "video/mp4",
    }


async def test_video_attachment_is_downloaded_for_the_core(app, fake, discord_bot):
    got = []

    async def watch(ctx):
        got.append(await ctx.message.attachments[0].read())
        await ctx.say("seen it")

    answer_with(app, watch, priority=1)  # ahead of the video route
    await fake.dispatch(
        "MESSAGE_CREATE", fake.message("what is this?", attachments=[video(fake, "clip.mp4", b"fake mp4 bytes")])
    )
    await fake.wait_for("POST", "/channels/400/messages")
    assert got == [b"fake mp4 bytes"]


async def test_posted_clip_without_valley_weights_says_how_to_turn_video_on(app, fake, discord_bot):
    from greenroom.core.video import OFF

    await fake.dispatch(
        "MESSAGE_CREATE", fake.message("what is this?", attachments=[video(fake, "clip.mp4", b"fake mp4 bytes")])
    )
    reply = (await fake.wait_for("POST", "/channels/400/messages"))[0].body["content"]
    assert reply == OFF


async def test_oversized_video_is_refused_without_download(app, fake, discord_bot):
    await fake.dispatch("MESSAGE_CREATE", fake.message("", attachments=[video(fake, "huge.mp4", b"", size=30_000_000)]))
    reply = (await fake.wait_for("POST", "/channels/400/messages"))[0].body["content"]
    assert "huge.mp4 is 30 MB, over the 20 MB limit" in reply
    assert not fake.sent("GET", "/files/")


async def test_links_come_from_text_and_embeds(app, fake, discord_bot):
    links = []

    async def record(ctx):
        links.extend((link.url, link.source) for link in ctx.message.links)
        await ctx.say("noted")

    answer_with(app, record)
    await fake.dispatch(
        "MESSAGE_CREATE",
        fake.message(
            "read https://news.example/a, then (https://blog.example/b).",
            embeds=[
                {"type": "link", "url": "https://news.example/a"},
                {"type": "link", "url": "https://video.example/c"},
            ],
        ),
    )
    await fake.wait_for("POST", "/channels/400/messages")
    assert links == [
        ("https://news.example/a", "text"),
        ("https://blog.example/b", "text"),
        ("https://news.example/a", "embed"),
        ("https://video.example/c", "embed"),
    ]


async def test_admin_command_needs_manage_server(app, fake, discord_bot):
    await fake.dispatch("MESSAGE_CREATE", fake.message("/mode all", author="7", guild=True, mention=True))
    await fake.dispatch(
        "MESSAGE_CREATE", fake.message("/mode all", author="8", guild=True, mention=True, roles=(ADMIN_ROLE,))
    )
    await fake.wait_for("POST", f"/channels/{CHANNEL}/messages", 2)
    refused, accepted = posts(fake)
    assert "needs chat admin level in this chat" in refused and "needs" not in accepted
    assert app.settings.get(f"discord:{CHANNEL}", "mode") == "all"


def slash(name: str, args: str, user: str = "7") -> dict:
    """An INTERACTION_CREATE payload: `/name args` from ``user`` in the test server."""
    return {
        "id": "555",
        "application_id": "5000",
        "type": 2,
        "token": "itoken",
        "version": 1,
        "guild_id": "100",
        "channel_id": CHANNEL,
        "channel": {"id": CHANNEL, "type": 0, "guild_id": "100"},
        "member": {
            "user": {"id": user, "username": f"user{user}", "discriminator": "0", "avatar": None},
            "roles": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "3072",
        },
        "data": {"id": "1", "name": name, "type": 1, "options": [{"name": "args", "type": 3, "value": args}]},
        "app_permissions": "3072",
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "attachment_size_limit": 10485760,
    }


async def test_slash_commands_are_synced_and_answered(app, fake, discord_bot):
    synced = fake.sent("PUT", "/commands")[0].body
    assert {"character", "reset", "status", "help"} <= {c["name"] for c in synced}
    await fake.dispatch("INTERACTION_CREATE", slash("character", "list"))
    followup = (await fake.wait_for("POST", "/webhooks/5000/itoken"))[0]
    [callback] = fake.sent("POST", "/interactions/555/itoken/callback")
    assert callback.body["type"] == 5 and callback.at <= followup.at  # "thinking…" at once, then the answer
    assert "wren: Wren Ashby" in followup.body["content"]


async def test_a_declined_slash_command_gets_a_short_answer_only_its_sender_sees(app, fake, discord_bot):
    app.settings.set("acl:user", "discord:7", "deny")
    await fake.dispatch("INTERACTION_CREATE", slash("status", ""))
    [callback] = await fake.wait_for("POST", "/interactions/555/itoken/callback")
    assert callback.body["type"] == 4  # an answer, not "thinking…" (5) that Discord would time out
    assert callback.body["data"]["content"] == DECLINED and callback.body["data"]["flags"] == 64  # ephemeral


async def test_rate_limit_retry_after_is_respected(app, fake, discord_bot):
    async def answer(ctx):
        await ctx.say("after the wait")

    answer_with(app, answer)
    fake.fail_next("POST", "/channels/400/messages", retry_after=0.5)
    await fake.dispatch("MESSAGE_CREATE", fake.message("hi"))
    first, second = await fake.wait_for("POST", "/channels/400/messages", 2)
    assert second.body["content"] == "after the wait"
    assert second.at - first.at >= 0.45


async def test_rejected_token_is_one_clear_error(app, fake):
    fake.reject_token = True
    adapter = DiscordAdapter(app.host, DiscordSection(api_base=fake.api_base, gateway_url=fake.gateway_url), "bad")
    with pytest.raises(AdapterError, match="discord: the token in DISCORD_TOKEN was rejected"):
        await adapter.start()
    await adapter.close()


def test_shard_settings_choose_the_shards_this_process_runs():
    import discord

    from greenroom.bots.common import AdapterError
    from greenroom.bots.discord import client_for
    from greenroom.core.config import DiscordSection

    assert type(client_for(DiscordSection())) is discord.Client
    sharded = client_for(DiscordSection(shard_count=4, shard_ids=[2, 3]))
    assert isinstance(sharded, discord.AutoShardedClient)
    assert (sharded.shard_count, sharded.shard_ids) == (4, [2, 3])
    with pytest.raises(AdapterError, match="must be below shard_count 4"):
        client_for(DiscordSection(shard_count=4, shard_ids=[4]))
