"""The safe fetcher: public addresses only (checked where the connection goes), bounded in time and size."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp import web

from greenroom.models.fakenews.fetch import FetchError, SafeFetcher

ARTICLE = b"<html><head><title>Storm</title></head><body><p>The storm wall held.</p></body></html>"


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections: it must never be contacted."""

    def __init__(self) -> None:
        self.connections = 0

    async def start(self) -> int:
        def accept(reader, writer) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


@pytest.fixture
async def listener():
    trap = Listener()
    port = await trap.start()
    yield trap, port
    trap.server.close()
    assert trap.connections == 0, "a refused address was contacted"


@pytest.fixture
async def site(listener):
    _, trap_port = listener
    app = web.Application()

    async def article(request):
        return web.Response(body=ARTICLE, content_type="text/html", charset="utf-8")

    async def hop(request):
        n = int(request.match_info["n"])
        raise web.HTTPFound("/article" if n == 0 else f"/hop/{n - 1}")

    async def to_trap(request):
        raise web.HTTPFound(f"http://127.0.0.1:{trap_port}/secret")

    async def to_metadata(request):
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def trickle(request):
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        while True:
            await response.write(b"<p>.</p>")
            await asyncio.sleep(0.2)  # a slow server, not synchronisation

    async def huge(request):
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        return response

    async def bomb(request):
        return web.Response(
            body=gzip.compress(b"\0" * 50_000_000), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}
        )

    async def pdf(request):
        return web.Response(body=b"%PDF-1.4", content_type="application/pdf")

    app.router.add_get("/article", article)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/to-trap", to_trap)
    app.router.add_get("/to-metadata", to_metadata)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/huge", huge)
    app.router.add_get("/bomb", bomb)
    app.router.add_get("/pdf", pdf)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", SafeFetcher(deadline=2.0, max_bytes=1_000_000, allow=[f"127.0.0.1:{port}"])
    await runner.cleanup()


async def test_fetches_an_article_and_follows_redirects(site):
    base, fetcher = site
    page = await fetcher.get(f"{base}/hop/3")
    assert page.body == ARTICLE and page.url == f"{base}/article" and page.charset == "utf-8"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:127.0.0.1]/", "loopback (embedded in IPv6)"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local (embedded in IPv6)"),
        ("http://[2002:7f00:1::]/", "loopback (embedded in IPv6)"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00:ec2::254]/", "private"),
        ("http://localhost/", "localhost resolves to"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://0177.0.0.1/", "0177.0.0.1 is 127.0.0.1, a loopback address"),
        ("http://0x7f.1/", "is 127.0.0.1, a loopback address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata name"),
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:secret@example.com/", "user name or password"),
        ("https://example.com:8443/", "only the standard ports"),
        ("https://example.com/" + "a" * 2100, "characters long"),
    ],
)
async def test_refused_addresses_are_never_contacted(url, reason):
    with pytest.raises(FetchError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await SafeFetcher(deadline=2.0).get(url)


async def test_the_test_allowlist_is_exact(listener):
    _, port = listener
    with pytest.raises(FetchError, match="loopback"):
        await SafeFetcher(allow=["127.0.0.1:1"]).get(f"http://127.0.0.1:{port}/")


async def test_redirects_to_refused_addresses_are_refused(site, listener):
    base, fetcher = site
    with pytest.raises(FetchError, match="127.0.0.1 is a loopback address"):
        await fetcher.get(f"{base}/to-trap")
    with pytest.raises(FetchError, match="link-local"):
        await fetcher.get(f"{base}/to-metadata")


async def test_too_many_redirects(site):
    base, fetcher = site
    with pytest.raises(FetchError, match="more than 5 redirects"):
        await fetcher.get(f"{base}/hop/6")


async def test_a_trickling_server_hits_the_deadline(site):
    base, fetcher = site
    with pytest.raises(FetchError, match="did not answer within 2 s"):
        await asyncio.wait_for(fetcher.get(f"{base}/trickle"), 30)


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/huge", "over the 1,000,000-byte limit"),
        ("/bomb", "over the 1,000,000-byte limit"),
        ("/pdf", "application/pdf, not a page I can read"),
        ("/missing", "answered 404 Not Found"),
    ],
)
async def test_bodies_are_capped_and_typed(site, path, reason):
    base, fetcher = site
    with pytest.raises(FetchError, match=reason):
        await fetcher.get(base + path)


@pytest.fixture
async def card_site():
    """A site serving a character card, counting how often it was fetched."""
    from tests.test_cards import V2

    hits = []

    async def card(request):
        hits.append(request.path)
        return web.json_response(V2)

    app = web.Application()
    app.router.add_get("/cards/mira.json", card)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    yield tcp._server.sockets[0].getsockname()[1], hits
    await runner.cleanup()


async def test_character_loads_from_a_link_and_reloads_from_it(open_app, card_site):
    from tests.test_admin import say

    port, hits = card_site
    app = open_app(f'[fetch]\nallow = ["127.0.0.1:{port}"]\n')
    url = f"http://127.0.0.1:{port}/cards/mira.json"
    [loaded] = (await say(app, f"/character load {url}", user="local")).messages
    assert loaded.startswith("Loaded Captain Mira (captain-mira)")
    assert app.library.source_of("captain-mira")["url"] == url
    [again] = (await say(app, "/character reload captain-mira", user="local")).messages
    assert again == "Captain Mira is unchanged." and len(hits) == 2


async def test_character_links_follow_the_fetch_rules(app, card_site):
    from tests.test_admin import say

    port, hits = card_site
    [refused] = (await say(app, f"/character load http://127.0.0.1:{port}/cards/mira.json", user="local")).messages
    assert refused == "127.0.0.1 is a loopback address" and not hits
    assert "captain-mira" not in app.library.ids()


def test_the_command_line_refuses_private_links(capsys, config_file):
    from greenroom.cli import main

    assert main(["--config", str(config_file), "character", "load", "http://10.0.0.5/card.json"]) == 2
    assert capsys.readouterr().err.strip() == "greenroom: 10.0.0.5 is a private address"
