"""The Telegram adapter: the real python-telegram-bot against a fake Bot API on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import aiohttp
import pytest

from greenroom.bots.telegram import TelegramAdapter
from greenroom.core.config import TelegramSection
from tests.fakes.telegram_api import BOT, FakeTelegram
from tests.helpers import answer_with, assert_throttled, running, slow_model

GROUP = -100


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def adapter_for(app, fake: FakeTelegram, **settings) -> TelegramAdapter:
    settings.setdefault("placeholder_delay", 0.0)
    section = TelegramSection(base_url=fake.base_url, base_file_url=fake.base_file_url, poll_timeout=1, **settings)
    return TelegramAdapter(app.host, section, fake.token)


@pytest.fixture
async def telegram(app, fake):
    async with running(adapter_for(app, fake)) as adapter:
        yield adapter


async def test_direct_message_gets_a_persona_reply(app, fake, telegram):
    await fake.push(fake.message("Hello! Who are you?"))
    greeting, reply = await fake.wait_for("sendMessage", 2)  # a chat's first meeting opens with the greeting
    assert "I run the backstage" in greeting.params["text"]
    assert reply.params["chat_id"] == "1" and reply.params["text"].strip()
    typing = await fake.wait_for("sendChatAction", action="typing")
    assert typing[0].at < reply.at, "a typing indicator while the model works"
    await app.dispatcher.idle()
    history = app.history.recent("telegram:1", "wren", 5)
    assert history and history[-1].user_text == "Hello! Who are you?"
    menu = fake.sent("setMyCommands")[0].params["commands"]
    assert {"character", "reset", "mode", "help"} <= {c["command"] for c in menu}


async def test_group_answers_mentions_and_replies_only(app, fake, telegram):
    seen = []

    async def echo(ctx):
        seen.append(ctx.message.text)
        await ctx.say(f"echo: {ctx.message.text}")

    answer_with(app, echo)
    await fake.push(fake.message("just chatting", chat_id=GROUP, chat_type="group"))
    mention = fake.message(
        "@wren_bot are you there?",
        chat_id=GROUP,
        chat_type="group",
        entities=[{"type": "mention", "offset": 0, "length": 9}],
    )
    await fake.push(mention)
    bot_message = {"message_id": 5, "date": 0, "chat": {"id": GROUP, "type": "group"}, "from": BOT, "text": "hi"}
    await fake.push(fake.message("replying to you", chat_id=GROUP, chat_type="group", reply_to_message=bot_message))
    replies = await fake.wait_for("sendMessage", 2)
    assert seen == ["are you there?", "replying to you"]  # the unaddressed message was ignored
    assert replies[0].params["reply_parameters"]["message_id"] == mention["message_id"]


async def test_forum_topics_are_separate_conversations(app, fake, telegram):
    keys = []

    async def record(ctx):
        keys.append(str(ctx.message.key))
        await ctx.say("ok")

    answer_with(app, record)
    for topic in (11, 12):
        await fake.push(
            fake.message(
                "@wren_bot hi",
                chat_id=GROUP,
                chat_type="supergroup",
                is_topic_message=True,
                message_thread_id=topic,
                entities=[{"type": "mention", "offset": 0, "length": 9}],
            )
        )
    replies = await fake.wait_for("sendMessage", 2)
    assert keys == [f"telegram:{GROUP}/11", f"telegram:{GROUP}/12"]
    assert [r.params["message_thread_id"] for r in replies] == ["11", "12"]


async def test_long_reply_is_split_at_4096_on_line_boundaries(app, fake, telegram):
    lines = [f"line {i:04d} " + "x" * 90 for i in range(100)]

    async def long(ctx):
        await ctx.stream().finish("\n".join(lines))

    answer_with(app, long)
    await fake.push(fake.message("tell me everything"))
    parts = [c.params["text"] for c in await fake.wait_for("sendMessage", 3)]
    assert all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts).split("\n") == lines  # nothing lost, no line cut in two


async def test_streamed_reply_edits_are_throttled(app, fake):
    words = [f"word{i} " for i in range(40)]
    answer_with(app, slow_model(words, lambda: fake.wait_for("sendMessage")))
    async with running(adapter_for(app, fake, edit_interval=0.3)):
        await fake.push(fake.message("stream please"))
        await fake.wait_for("sendMessage")
        await app.dispatcher.idle()
    edits = fake.sent("editMessageText")
    assert_throttled([e.at for e in edits], 0.3)
    assert edits[-1].params["text"] == "".join(words).strip()


async def test_video_is_downloaded_for_the_core(app, fake, telegram):
    got = []

    async def watch(ctx):
        got.append(await ctx.message.attachments[0].read())
        await ctx.say("seen it")

    answer_with(app, watch, priority=1)  # ahead of the video route
    fake.add_file("clip1", b"\x00\x00\x00\x18ftypmp42 fake clip")
    await fake.push(
        fake.message(
            caption="what happens here?",
            video={
                "file_id": "clip1",
                "file_unique_id": "u1",
                "width": 64,
                "height": 64,
                "duration": 1,
                "file_size": 26,
                "mime_type": "video/mp4",
            },
        )
    )
    await fake.wait_for("sendMessage")
    assert got == [b"\x00\x00\x00\x18ftypmp42 fake clip"]
    assert [c.method for c in fake.calls if c.method in ("getFile", "download")] == ["getFile", "download"]


async def test_oversized_video_is_refused_without_download(app, fake, telegram):
    fake.add_file("big", b"", size=25 * 1024 * 1024)
    await fake.push(
        fake.message(
            video={
                "file_id": "big",
                "file_unique_id": "u2",
                "width": 64,
                "height": 64,
                "duration": 60,
                "file_size": 25 * 1024 * 1024,
            }
        )
    )
    reply = (await fake.wait_for("sendMessage"))[0].params["text"]
    assert "20 MB" in reply and "26.2 MB" in reply
    assert not fake.sent("getFile") and not fake.sent("download")


async def test_links_come_from_entities(app, fake, telegram):
    links = []

    async def record(ctx):
        links.extend(link.url for link in ctx.message.links)
        await ctx.say("noted")

    answer_with(app, record)
    text = "see example.org/a and this"
    await fake.push(
        fake.message(
            text,
            entities=[
                {"type": "url", "offset": 4, "length": 13},
                {"type": "text_link", "offset": 22, "length": 4, "url": "https://news.example/story"},
            ],
        )
    )
    await fake.wait_for("sendMessage")
    assert links == ["example.org/a", "https://news.example/story"]


async def test_admin_command_needs_a_chat_administrator(app, fake, telegram):
    fake.admins[GROUP] = [8]
    await fake.push(fake.message("/mode all", chat_id=GROUP, chat_type="group", user_id=7))
    await fake.push(fake.message("/mode@wren_bot all", chat_id=GROUP, chat_type="group", user_id=8))
    refused, accepted = [c.params["text"] for c in await fake.wait_for("sendMessage", 2)]
    assert "needs chat admin level in this chat" in refused
    assert "needs" not in accepted
    assert app.settings.get(f"telegram:{GROUP}", "mode") == "all"
    assert len(fake.sent("getChatAdministrators")) == 1  # cached


async def test_flood_limit_is_waited_out(app, fake, telegram):
    async def answer(ctx):
        await ctx.say("after the flood")

    answer_with(app, answer)
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await fake.push(fake.message("hi"))
    first, second = await fake.wait_for("sendMessage", 2)
    assert second.params["text"] == "after the flood"
    assert second.at - first.at >= 0.9


async def test_html_parse_error_retries_as_plain_text(app, fake, telegram):
    async def answer(ctx):
        await ctx.say("**bold** claim <b>")

    answer_with(app, answer)
    fake.fail_next(
        "sendMessage",
        400,
        "Bad Request: can't parse entities: unclosed tag",
        when=lambda p: p.get("parse_mode") == "HTML",
    )
    await fake.push(fake.message("hi"))
    html, plain = await fake.wait_for("sendMessage", 2)
    assert html.params["text"] == "<b>bold</b> claim &lt;b&gt;"
    assert plain.params["text"] == "**bold** claim <b>" and "parse_mode" not in plain.params


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_webhook_mode_checks_the_secret_token(app, fake, monkeypatch):
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    async with running(adapter_for(app, fake, webhook_url=url, listen="127.0.0.1", port=port)):
        hook = fake.sent("setWebhook")[0].params
        assert hook["url"] == url and hook["secret_token"] == "s3cret"
        update = {"update_id": 1, "message": fake.message("via webhook")}
        async with aiohttp.ClientSession() as http:
            bad = await http.post(
                url,
                data=json.dumps(update),
                headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": "wrong"},
            )
            assert bad.status == 403
            good = await http.post(
                url,
                data=json.dumps({**update, "update_id": 2}),
                headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": "s3cret"},
            )
            assert good.status == 200
        replies = await fake.wait_for("sendMessage")
        assert len(replies) == 1 and not fake.sent("getUpdates")


async def test_bot_admin_loads_a_character_from_an_attached_file(app, fake, telegram):
    from tests.test_cards import V2

    fake.add_file("card", json.dumps(V2).encode())
    fake.add_file("broken", b'{"spec": "chara_card_v2", "data": ')
    fake.add_file("huge", b"", size=40 * 1024 * 1024)

    def upload(file_id: str, filename: str, size: int) -> dict:
        return fake.message(
            caption="/character load",
            chat_id=GROUP,
            chat_type="group",
            user_id=9,  # a bot admin (the configuration's admins)
            document={
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_name": filename,
                "mime_type": "application/json",
                "file_size": size,
            },
        )

    await fake.push(upload("card", "mira.json", len(json.dumps(V2))))
    await fake.push(upload("broken", "mira.json", 34))
    await fake.push(upload("huge", "mira.json", 40 * 1024 * 1024))
    loaded, broken, huge = [c.params["text"] for c in await fake.wait_for("sendMessage", 3)]
    assert loaded.startswith("Loaded Captain Mira (captain-mira)")
    assert "mira.json" in broken and "JSON" in broken
    assert "over the 20 MB limit" in huge
    assert app.library.get("captain-mira").character.name == "Captain Mira"  # the failed upload changed nothing
    assert app.characters.uploads.get("captain-mira") == ("mira.json", json.dumps(V2).encode())  # for reloads
    assert [c.params["file_id"] for c in fake.sent("getFile")] == ["card", "broken"]


async def test_a_command_for_another_bot_is_left_alone(app, fake, telegram):
    for text in ("/start@other_bot", "/nope@wren_bot"):
        await fake.push(
            fake.message(
                text,
                chat_id=GROUP,
                chat_type="group",
                entities=[{"type": "bot_command", "offset": 0, "length": len(text)}],
            )
        )
    [answer] = await fake.wait_for("sendMessage")
    await app.dispatcher.idle()
    assert answer.params["text"] == "Unknown command /nope. Send /help for the list."
    assert len(fake.sent("sendMessage")) == 1  # /start@other_bot got no answer
