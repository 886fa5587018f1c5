"""Link checks: articles classified per second on this CPU, and fetch + extract time per article
from a local server, each next to a bare baseline measured in the same run.

Baselines: classification against a plain `SentenceTransformer.encode` of the same 512-token windows,
split beforehand (what the embedder costs by itself); fetching against a plain aiohttp GET plus
`trafilatura.extract`, without the address checks, limits and fallbacks.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
from aiohttp import web

from greenroom.models.fakenews.detector import load_detector
from greenroom.models.fakenews.extract import Article, extract
from greenroom.models.fakenews.fetch import SafeFetcher
from tests.bench.bench_turn import WORDS
from tests.bench.common import models, p, table, timed

N_ARTICLES = 200
N_FETCHES = 100


def synthetic_articles(n: int, seed: int = 5) -> list[Article]:
    """News-length articles (400-900 words in sentences and paragraphs)."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + "."

    out = []
    for i in range(n):
        paragraphs = ["\n".join(sentence() for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(6, 12))]
        out.append(Article(f"Headline number {i}: {sentence()}", "\n\n".join(paragraphs)))
    return out


def page(article: Article) -> str:
    body = "".join(f"<p>{para}</p>" for para in article.text.split("\n\n"))
    furniture = "".join(f"<li><a href='/s/{i}'>Section {i}</a></li>" for i in range(60))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{article.title}</title>"
        f"<script>{'var x = 1;' * 500}</script></head><body><nav><ul>{furniture}</ul></nav>"
        f"<main><article><h1>{article.title}</h1>{body}</article></main>"
        f"<aside><ul>{furniture}</ul></aside><footer>(c) Example News</footer></body></html>"
    )


def classify(embedder) -> list[list[object]]:
    detector = load_detector(None, lambda: embedder)
    articles = synthetic_articles(N_ARTICLES)
    start = time.perf_counter()
    detector.score(articles)
    ours = N_ARTICLES / (time.perf_counter() - start)
    windows = [w for a in articles for w in detector.features.windows(a)]
    first = detector.features.windows(articles[0])
    start = time.perf_counter()
    embedder.model.encode(windows, batch_size=embedder.batch_size)
    bare = N_ARTICLES / (time.perf_counter() - start)
    one = timed(lambda: detector.score(articles[:1]), repeat=30)
    one_bare = timed(lambda: embedder.model.encode(first), repeat=30)
    per = len(windows) / N_ARTICLES
    return [
        [f"batch of 200 ({per:.1f} windows each): articles/s", ours, bare, ours / bare],
        ["one article (a chat link): p50 ms", p(one, 50), p(one_bare, 50), p(one, 50) / p(one_bare, 50)],
    ]


async def fetch_and_extract() -> list[list[object]]:
    import trafilatura

    pages = [page(a) for a in synthetic_articles(20, seed=9)]

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=pages[int(request.match_info["n"]) % len(pages)], content_type="text/html")

    app = web.Application()
    app.router.add_get("/a/{n}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fetcher = SafeFetcher(allow=[f"127.0.0.1:{port}"])

    async def ours(n: int) -> float:
        start = time.perf_counter()
        article = await asyncio.to_thread(extract, await fetcher.get(f"http://127.0.0.1:{port}/a/{n}"))
        assert article.text
        return (time.perf_counter() - start) * 1000

    async def bare(n: int) -> float:
        start = time.perf_counter()
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/a/{n}") as response:
            html = await response.text()
        assert await asyncio.to_thread(trafilatura.extract, html)
        return (time.perf_counter() - start) * 1000

    try:
        for warm in range(3):
            await ours(warm), await bare(warm)
        ours_ms = [await ours(n) for n in range(N_FETCHES)]
        bare_ms = [await bare(n) for n in range(N_FETCHES)]
    finally:
        await runner.cleanup()
    size = sum(len(x) for x in pages) / len(pages) / 1000
    return [
        [
            f"fetch + extract ({size:.0f} kB pages): p50 ms",
            p(ours_ms, 50),
            p(bare_ms, 50),
            p(ours_ms, 50) / p(bare_ms, 50),
        ],
        ["fetch + extract: p95 ms", p(ours_ms, 95), p(bare_ms, 95), p(ours_ms, 95) / p(bare_ms, 95)],
    ]


def main() -> None:
    embedder, _ = models()
    rows = classify(embedder) + asyncio.run(fetch_and_extract())
    table(
        "Link checks on CPU (synthetic news-length articles, local server on 127.0.0.1)",
        ["figure", "Greenroom", "baseline", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
