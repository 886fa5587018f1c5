"""Links in chat: flagged alongside the reply, on request, cached, rate-limited, switchable per chat.

Articles come from an aiohttp server on 127.0.0.1 (allowed through `fetch.allow`); extraction is
real (trafilatura). The chat-flow tests swap the detector for a scripted one (p_fake 0.9 when the
article mentions the moon, else 0.1) so they test the flow, not the model; the command-line test
uses the shipped detector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from aiohttp import web

from greenroom.core.config import FactcheckSection, FetchSection
from greenroom.models.fakenews.extract import Article
from greenroom.models.fakenews.score import Score
from tests.fakes.server import FakeServer
from tests.helpers import RecordingReplier, answer_with, message

PARAGRAPH = (
    "The committee met on Tuesday to discuss the proposal in detail, and members from both parties "
    "asked questions about the cost, the timetable and the people it would affect. "
)


def page(title: str, body: str) -> str:
    return (
        f"<html><head><title>{title}</title></head><body><nav>Home | World | Sport</nav><article>"
        f"<h1>{title}</h1><p>{body}</p><p>{PARAGRAPH * 3}</p></article><footer>© Example News</footer>"
        "</body></html>"
    )


class ArticleSite(FakeServer[str]):
    """Serves /fake/N (moon stories), /real/N and /stall (answers once `release` is set)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        async def fake(request: web.Request) -> web.Response:
            await self.record(request.path)
            return web.Response(
                text=page("Senator lands on the moon", "A senator said he walked on the moon."),
                content_type="text/html",
            )

        async def real(request: web.Request) -> web.Response:
            await self.record(request.path)
            return web.Response(
                text=page("Council passes budget", "The council passed the budget."), content_type="text/html"
            )

        async def stall(request: web.Request) -> web.Response:
            await self.record(request.path)
            await self.release.wait()
            return await fake(request)

        app.router.add_get("/fake/{n}", fake)
        app.router.add_get("/real/{n}", real)
        app.router.add_get("/stall", stall)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class MoonDetector:
    def score(self, articles: Sequence[Article]) -> list[Score]:
        return [Score(0.9 if "moon" in a.text else 0.1, 0.2) for a in articles]


@pytest.fixture
async def site():
    async with ArticleSite() as server:
        yield server


@pytest.fixture
def checked(app, site):
    """The app with fact-checking on by default, the site allowed, and the persona stubbed to answer at once."""
    app.config = app.config.model_copy(
        update={
            "fetch": FetchSection(allow=[f"127.0.0.1:{site.port}"]),
            "factcheck": FactcheckSection(default="on", fetches_per_minute=60, fetch_burst=10),
        }
    )
    app.link_checker._make_detector = MoonDetector

    async def reply(ctx) -> None:
        await ctx.say("persona reply")

    answer_with(app, reply)
    return app


async def send(app, text: str, **kw) -> RecordingReplier:
    replier = RecordingReplier()
    done = await app.dispatcher.submit(message(text, **kw), replier)
    if done is not None:
        await done
    await app.factcheck.idle()
    return replier


async def test_a_likely_fake_link_is_flagged_and_a_real_one_is_not(checked, site):
    fake, real = site.url("/fake/1"), site.url("/real/1")
    replies = await send(checked, f"have you seen this? {fake}")
    assert replies.messages[0] == "persona reply"
    flag = replies.messages[1]
    assert fake in flag and "Senator lands on the moon" in flag and "90%" in flag
    assert "automated estimate" in flag
    replies = await send(checked, f"and this {real}")
    assert replies.messages == ["persona reply"]
    assert site.calls == ["/fake/1", "/real/1"]


async def test_the_reply_never_waits_for_the_check(checked, site):
    replier = RecordingReplier()
    done = await checked.dispatcher.submit(message(f"look {site.url('/stall')}"), replier)
    await done
    assert replier.messages == ["persona reply"]  # answered while the article is still being fetched
    await site.until(lambda: site.calls, 1, timeout=10)
    site.release.set()
    await checked.factcheck.idle()
    assert len(replier.messages) == 2 and "may be fake news" in replier.messages[1]


async def test_links_in_group_messages_are_checked_without_a_mention(checked, site):
    replies = await send(checked, f"lol {site.url('/fake/2')}", direct=False)
    assert len(replies.messages) == 1 and "may be fake news" in replies.messages[0]  # flag only, no persona reply


async def test_factcheck_on_request_always_answers(checked, site):
    replies = await send(checked, f"/factcheck {site.url('/real/3')}")
    assert replies.messages == [
        f"“Council passes budget” ({site.url('/real/3')}) reads as real news to the "
        "detector (10% likely fake).\nThis is an automated estimate, not a fact-check."
    ]
    replies = await send(checked, "/factcheck http://127.0.0.2/secret")
    assert replies.messages[0].startswith("I could not check http://127.0.0.2/secret: ")
    assert "loopback" in replies.messages[0]


async def test_verdicts_are_cached_per_normalised_url(checked, site):
    await send(checked, site.url("/fake/4?utm_source=x#top"))
    replies = await send(checked, "/factcheck " + site.url("/fake/4"))
    assert "may be fake news" in replies.messages[0]
    assert site.calls == ["/fake/4"]  # the second check came from the cache


async def test_fetches_are_rate_limited_per_chat_and_links_per_message(checked, site):
    checked.factcheck.rate.burst, checked.factcheck.rate.rate = 2, 0.0001
    links = " ".join(site.url(f"/real/{i}") for i in range(50))
    await send(checked, f"fifty links: {links}")
    assert site.calls == ["/real/0", "/real/1"]  # max_links is 3, the burst 2
    replies = await send(checked, "/factcheck " + site.url("/fake/9"))
    assert replies.messages == ["Too many links checked in this chat just now; try again in a minute."]
    replies = await send(checked, "/factcheck " + site.url("/real/2"), chat="c2")  # another chat has its own
    assert "reads as real news" in replies.messages[0]
    assert site.calls == ["/real/0", "/real/1", "/real/2"]


async def test_the_switch_is_per_chat_and_for_admins(checked, site):
    replies = await send(checked, "/factcheck off", user="someone")
    assert replies.messages == ["/factcheck off needs chat admin level in this chat; you are user."]
    replies = await send(checked, "/factcheck off", admin=True, direct=False)
    assert replies.messages == ["Links shared here will not be checked (/factcheck URL still works)."]
    replies = await send(checked, f"{site.url('/fake/5')}", direct=False)
    assert replies.messages == [] and site.calls == []
    replies = await send(checked, f"{site.url('/fake/5')}", chat="other")
    assert "may be fake news" in replies.messages[1]
    replies = await send(checked, "/factcheck threshold 0.95", admin=True, chat="other", direct=False)
    assert replies.messages == ["Links here are flagged at 0.95 or more."]
    replies = await send(checked, f"{site.url('/fake/6')}", chat="other")
    assert replies.messages == ["persona reply"]


async def test_links_check_on_the_command_line(config_file, site):
    from greenroom.cli import main

    config_file.write_text(config_file.read_text() + f'[fetch]\nallow = ["127.0.0.1:{site.port}"]\n')
    out = await asyncio.to_thread(
        _run_cli, main, ["--config", str(config_file), "links", "check", site.url("/fake/7"), "--json"]
    )
    code, printed = out
    verdict = json.loads(printed)
    assert code == 0 and set(verdict) == {"url", "verdict", "p_fake", "p_machine", "title", "error"}
    assert verdict["title"] == "Senator lands on the moon" and verdict["verdict"] in ("fake", "real")
    assert 0 <= verdict["p_fake"] <= 1 and 0 <= verdict["p_machine"] <= 1
    code, printed = await asyncio.to_thread(
        _run_cli, main, ["--config", str(config_file), "links", "check", "http://169.254.169.254/latest", "--json"]
    )
    verdict = json.loads(printed)
    assert code == 1 and verdict["verdict"] == "error" and "link-local" in verdict["error"]


def _run_cli(main, argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()
