"""The one model throttle: a turn that fails mid-reply frees its slot only once its generation has
stopped, so two generations never share the model (one llama.cpp context would crash)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from greenroom.core.commands import Context, Level
from greenroom.core.persona import PersonaEngine
from greenroom.models.llm import Generation, Messages, Sampling
from tests.helpers import RecordingReplier, message


class CountingModel:
    """A stand-in language model that counts generations running at once; a real model is too fast
    on a short reply to show the overlap."""

    name, n_ctx, tokenizer_id, slots = "counting", 2048, "counting", 1

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def stream(self, messages: Messages, sampling: Sampling, gen: Generation) -> Iterator[str]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            for i in range(4):
                yield f"word{i} "
                time.sleep(0.3)  # a slow model between tokens, as on a long prompt
        finally:
            with self.lock:
                self.running -= 1


class DeletedPlaceholder(RecordingReplier):
    """The user deleted the bot's placeholder: editing it fails."""

    async def edit(self, ref, text: str) -> None:
        raise RuntimeError("Unknown Message")


async def test_a_failed_turn_frees_its_slot_only_after_its_generation_stops(app) -> None:
    model = CountingModel()
    engine = PersonaEngine(app.library, app.history, app.settings, model, app.config.persona)
    failing, waiting = DeletedPlaceholder(), RecordingReplier()
    first = Context(message("Tell me about the ghost light.", chat="c1"), failing, Level.USER)
    second = Context(message("And the fire alarm?", chat="c2"), waiting, Level.USER)
    results = await asyncio.gather(engine.reply(first), engine.reply(second), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None  # the second turn was answered
    assert waiting.messages[-1].startswith("word0")
    assert model.most == 1 and model.running == 0
