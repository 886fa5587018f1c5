"""The persona engine: one chat turn with the conversation's character.

Retrieve stories and memories for the user's line, assemble the prompt (`core.prompt`), stream
the model's reply to the chat, post-process it, store the turn in history, and memorize the turns
that left the history window (`memory.long_term`). The engine holds the one throttle for model
calls: at most ``llm.slots`` generations at once, across all chats.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any

import numpy as np

from greenroom.core.cleanup import CJK, Cleanup, join_prime
from greenroom.core.commands import Context
from greenroom.core.config import PersonaSection, persona_settings
from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.lore import select_lore
from greenroom.core.macros import MacroContext, expand
from greenroom.core.metrics import Metrics
from greenroom.core.prompt import (
    Budgets,
    PastTurn,
    Prompt,
    Recalled,
    StoryRef,
    build_chat,
    build_haruhi2,
    memory_lines,
    query_string,
    stop_strings,
)
from greenroom.core.reply import StreamingReply
from greenroom.core.threads import iterate_in_thread
from greenroom.errors import UserError
from greenroom.memory.characters import Character
from greenroom.memory.db import DatabaseError
from greenroom.memory.history import History, Turn
from greenroom.memory.library import Library, Loaded, Retrieved
from greenroom.memory.long_term import LongTermMemory
from greenroom.memory.lorebook_store import LorebookStore
from greenroom.memory.settings import Settings
from greenroom.models.llm import LLM, Generation, Messages, Sampling

log = logging.getLogger(__name__)

NOT_STORED = "(My database did not answer just now, so I may not remember this exchange.)"
HISTORY_WINDOW = 64  # turns read from the store; the budget decides how many reach the prompt


@dataclass
class PreparedTurn:
    loaded: Loaded
    role: str
    text: str
    prompt: Prompt
    mode: str
    prime: str = ""  # the start of the reply the model continues (haruhi2: `Name:「`)
    remembers: bool = False  # long-term memory is on for this turn
    window: int = 0  # turns the next prompt's history is expected to hold: older ones are memorized

    @property
    def name(self) -> str:
        """The character's name in prompts."""
        return self.loaded.character.speakers[0]


class PersonaEngine:
    """Runs chat turns for whichever character each conversation has."""

    def __init__(
        self,
        library: Library,
        history: History,
        settings: Settings,
        llm: LLM,
        config: PersonaSection,
        metrics: Metrics | None = None,
        memory: LongTermMemory | None = None,
        clip_note: Callable[[ConversationKey], str] | None = None,
        zone: tzinfo | None = None,
        lorebooks: LorebookStore | None = None,
    ) -> None:
        self.library = library
        self.history = history
        self.settings = settings
        self.llm = llm
        self.config = config
        self.metrics = metrics or Metrics()
        self.memory = memory
        self.clip_note = clip_note  # what the last clip shared in the conversation showed (core.video)
        self.zone = zone  # macros' time and date (``bot.timezone``; None: the machine's)
        self.lorebooks = lorebooks  # books attached to characters and chats, beside the card's own
        self.model_gate = asyncio.Semaphore(llm.slots)

    # ----- who is talking to whom ------------------------------------------------------------

    def character_id(self, key: ConversationKey) -> str:
        return self.settings.get(key.chat, "character") or self.config.default_character

    def role_name(self, actor: Actor) -> str:
        """The user's name in the story: set with /iam, else their display name."""
        return self.settings.get(actor.ref, "iam") or actor.display_name

    def macros(self, key: ConversationKey, character: Character, user: str, idle: float | None = None) -> MacroContext:
        """What a card's macros expand to in this conversation, now; ``idle``: seconds since the
        user's previous message."""
        now = datetime.now(self.zone) if self.zone else datetime.now().astimezone()
        return MacroContext(character.speakers[0], user, str(key), now, idle)

    def greeting(self, key: ConversationKey, user: str) -> str | None:
        """The character's greeting the first time this conversation meets it, else None."""
        character = self.library.get(self.character_id(key)).character
        marker = f"greeted:{character.id}"
        if not character.greeting or self.settings.get(str(key), marker):
            return None
        self.settings.set(str(key), marker, "1")
        options = [character.greeting, *character.extra.get("alternate_greetings", [])]
        return expand(options[zlib.crc32(str(key).encode()) % len(options)], self.macros(key, character, user))

    # ----- one turn ----------------------------------------------------------------------------

    def prepare(self, message: Message, text: str) -> PreparedTurn:
        """Retrieval and prompt assembly (blocking: embedding runs here)."""
        loaded = self.library.get(self.character_id(message.key))
        character = loaded.character
        settings = persona_settings(self.config, character.settings)
        mode = settings["mode"]
        role = self.role_name(message.author)
        query = query_string(role, text) if mode == "haruhi2" else text  # ChatHaruhi embeds the wrapped line
        vector = self.library.embedder.query(query)  # the hot path's one embedding (twice in haruhi2 mode)
        hits = self._scenes(message, character.id, query, vector, settings)
        recent = self.history.recent(str(message.key), character.id, HISTORY_WINDOW)
        mine = [t.at for t in recent if t.user_id == message.author.ref]
        macros = self.macros(message.key, character, role, time.time() - mine[-1] if mine else None)
        ranked = [
            StoryRef(h.story.source, expand(h.story.text, macros), h.story.tokens, round(h.score, 4)) for h in hits
        ]
        past = [PastTurn(t.speaker, t.user_text, t.reply, t.reply_raw, t.id) for t in recent]
        count = self.llm.count_tokens
        remembers = self.memory is not None and settings["memory"]
        reused = vector if query == text else None
        recalled = self._recall(message, loaded, text, reused, settings, mode) if remembers else []
        attached = self.lorebooks.books_for(character.id, message.key.chat) if self.lorebooks else []
        before, after = select_lore(
            [character.extra.get("book", {}), *attached],
            [x for t in past for x in (t.user_text, t.reply)] + [text],
            count,
            character.speakers[0],
            self.llm.n_ctx,
        )
        # each part on its own: a {{pick}} in the card stays put whichever lore entries fire
        system_prompt = "\n\n".join(filter(None, (expand(t, macros) for t in (before, character.system_prompt, after))))
        note = self.clip_note(message.key) if self.clip_note is not None else ""
        budgets = Budgets(
            settings["story_budget"],
            settings["history_budget"],
            self.llm.n_ctx - (count(note) if note else 0),
            self.config.max_reply_tokens,
            settings["memory_budget"] if remembers else 0,
            settings["memory_k"],
        )
        if mode == "haruhi2":
            prompt = build_haruhi2(
                system_prompt, ranked, past, role, text, budgets, count, bool(loaded.stories), recalled
            )
        else:
            prompt = build_chat(
                system_prompt, ranked, past, role, text, budgets, count, not message.is_direct, recalled
            )
        if note:  # the clip rides on this turn's message (chat) or just before it (haruhi2), as the scenes do
            if mode == "chat":
                prompt.messages[-1] = {"role": "user", "content": f"{note}\n\n{prompt.messages[-1]['content']}"}
            else:
                prompt.messages.insert(len(prompt.messages) - 1, {"role": "system", "content": note})
        if post := expand(character.extra.get("post_history", ""), macros):
            if mode == "chat":  # keep strict alternation: the instruction rides on the last user turn
                prompt.messages[-1] = {"role": "user", "content": f"{prompt.messages[-1]['content']}\n\n{post}"}
            else:
                prompt.messages.insert(len(prompt.messages) - 1, {"role": "system", "content": post})
        prompt.stop[:0] = settings["stop"]  # first: the OpenAI API sends only four
        prompt.stop = list(dict.fromkeys([*prompt.stop, *stop_strings(*character.speakers)]))
        # all the history fit: the window is not full yet, and this turn joins it; else it holds as many again
        held = prompt.history_turns
        window = min(held + 1, HISTORY_WINDOW) if held == len(past) else held
        turn = PreparedTurn(loaded, role, text, prompt, mode, remembers=remembers, window=window)
        turn.prime = f"{turn.name}:「" if mode == "haruhi2" else ""
        return turn

    def _scenes(
        self, message: Message, character_id: str, query: str, vector: np.ndarray, settings: dict
    ) -> list[Retrieved]:
        """The character's best scenes; none, with a log line, while the vector store fails."""
        hybrid = settings["retrieval"] == "hybrid"
        try:
            return self.library.search(character_id, query, settings["k"], hybrid, vector)
        except UserError:
            raise
        except Exception as e:  # the store is down: the character answers from its system prompt
            log.warning("scenes for %s not retrieved (vector store: %s: %s)", message.key, type(e).__name__, e)
            return []

    def _recall(
        self, message: Message, loaded: Loaded, text: str, vector: np.ndarray | None, settings: dict, mode: str
    ) -> list[Recalled]:
        """Memories of this conversation relevant to the user's words (``vector``: their embedding, if
        made already), as the prompt shows them; twice as many candidates as fit, since those of
        turns the history still holds are left out."""
        assert self.memory is not None
        k, similarity = (
            settings["memory_k"],
            settings["memory_similarity_cjk" if CJK.search(text) else "memory_similarity"],
        )
        found = self.memory.recall(str(message.key), loaded.character.id, text, 2 * k, similarity, vector)
        name = loaded.character.speakers[0]
        out = []
        for m in found:
            lines = memory_lines(m.speaker, m.user_text, name, m.reply, m.said_at, brackets=mode == "haruhi2")
            out.append(Recalled(m.turn_id, m.speaker, lines, self.llm.count_tokens(lines), round(m.score, 4)))
        return out

    async def reply(self, ctx: Context) -> None:
        message, replier = ctx.message, ctx.replier
        text = message.text.strip()
        if not text:
            return
        limit = self.config.max_message_chars
        if len(text) > limit:
            await replier.send(f"(Your message is {len(text)} characters; I read only the first {limit}.)")
            text = text[:limit]
        if (greeting := self.greeting(message.key, self.role_name(message.author))) is not None:
            await replier.send(greeting)
        turn = await asyncio.to_thread(self.prepare, message, text)
        sampling = Sampling(
            max_tokens=self.config.max_reply_tokens,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            repeat_penalty=self.config.repeat_penalty,
            frequency_penalty=self.config.frequency_penalty,
            stop=tuple(turn.prompt.stop),
        )
        clean = Cleanup(turn.loaded.character.speakers, text, (turn.role,), turn.prompt.stop)
        stream = ctx.stream()
        async with self.model_gate, replier.typing():
            start = time.perf_counter()
            who = str(message.key)
            raw, gen, first = await self._generate(
                turn.prompt.messages, sampling, turn.prime, clean, stream, start, who
            )
            if clean.echo_only(raw):  # it only restated the user's words: once more, primed past them
                used = gen.completion_tokens
                turn.prime += "嗯，" if CJK.search(text) else "Well, "
                again = replace(sampling, seed=sampling.seed + 1)  # a server that cannot be primed samples anew
                raw, gen, _ = await self._generate(turn.prompt.messages, again, turn.prime, clean, stream, start, who)
                gen.completion_tokens += used
            seconds = time.perf_counter() - start
        shown = clean.final(raw, truncated=gen.finish_reason == "length") or "…"
        await stream.finish(shown)
        try:
            self.history.add(
                str(message.key),
                turn.loaded.character.id,
                Turn(message.author.ref, turn.role, text, shown, f"{turn.name}:「{shown}」"),
            )
        except DatabaseError as e:  # the answer stands; say what will be missing from the history
            log.warning("turn in %s answered but not stored: %s", message.key, e.detail)
            await replier.send(NOT_STORED)
        else:
            await self._memorize(message, turn)
        self._count(message, turn, gen, seconds, first)
        await replier.report(self.trace(turn, shown, gen))

    async def _generate(
        self,
        messages: Messages,
        sampling: Sampling,
        prime: str,
        clean: Cleanup,
        stream: StreamingReply,
        start: float,
        conversation: str,
    ) -> tuple[str, Generation, float | None]:
        """One generation, streamed to the chat as ``clean`` shows it: the raw reply (the prime
        included, cut at the first stop string), its record, and the seconds to its first piece."""
        gen, first, out, stopped = Generation(conversation=conversation), None, "", False
        primed = [*messages, {"role": "assistant", "content": prime}] if prime else messages
        pieces = iterate_in_thread(lambda: self.llm.stream(primed, sampling, gen), gen.cancel)
        # closed inside the gate, whatever happens: the generation's thread ends before the slot is free
        async with aclosing(pieces):
            async for piece in pieces:
                first = first or time.perf_counter() - start
                out += piece
                cut = clean.at_stop(out)
                if cut is not None:  # a stop string the backend did not apply (the OpenAI API takes four)
                    out, stopped = cut, True
                    break
                ending = sampling.max_tokens - gen.completion_tokens <= max(8, sampling.max_tokens // 4)
                await stream.update(clean.partial(join_prime(prime, out), ending))
        if stopped:
            gen.finish_reason = "stop"
        return join_prime(prime, out), gen, first

    async def _memorize(self, message: Message, turn: PreparedTurn) -> None:
        """Into long-term memory: the turns the next prompt's history will no longer hold. After the
        reply is shown: nobody waits for it."""
        if not turn.remembers:
            return
        assert self.memory is not None
        try:
            await asyncio.to_thread(self.memory.memorize, str(message.key), turn.loaded.character.id, turn.window)
        except DatabaseError as e:  # the turn is in the history; a later turn memorizes it
            log.warning("turns of %s not memorized yet: %s", message.key, e.detail)

    def _count(
        self, message: Message, turn: PreparedTurn, gen: Generation, seconds: float, first: float | None
    ) -> None:
        """Metrics, and the turn's one log line (message text only at debug level)."""
        self.metrics.replies.labels(message.key.platform).inc()
        self.metrics.model_seconds.observe(seconds)
        if first is not None:
            self.metrics.first_token_seconds.observe(first)
        fields = {
            "conversation": str(message.key),
            "character": turn.loaded.character.id,
            "latency_s": round(seconds, 3),
            "first_token_s": round(first, 3) if first is not None else None,
            "prompt_tokens": gen.prompt_tokens,
            "cached_tokens": gen.cached_tokens,
            "completion_tokens": gen.completion_tokens,
            "memories": len(turn.prompt.memories),
        }
        if log.isEnabledFor(logging.DEBUG):
            fields["text"] = turn.text
        log.info("turn", extra={"turn": fields})

    @staticmethod
    def comment_text(description: str) -> str:
        """What the chat's character is asked when it comments on a clip (``video.comment``)."""
        return f"(I just shared a video clip. It shows: {description}) What do you make of it?"

    def trace(self, turn: PreparedTurn, reply: str, gen: Generation) -> dict[str, Any]:
        """The structured record of a turn (`greenroom chat --json` prints it)."""
        return {
            "reply": reply,
            "character": turn.loaded.character.id,
            "model": self.llm.name,
            "messages": turn.prompt.messages,
            **({"prime": turn.prime} if turn.prime else {}),
            "stories": [
                {"id": s.id, "text": s.text, "score": s.score, "tokens": s.tokens} for s in turn.prompt.stories
            ],
            "memories": [
                {"turn": m.turn, "text": m.text, "score": m.score, "tokens": m.tokens} for m in turn.prompt.memories
            ],
            "prompt_tokens": gen.prompt_tokens,
            "cached_tokens": gen.cached_tokens,
            "history_turns": turn.prompt.history_turns,
            "mode": turn.mode,
            "completion_tokens": gen.completion_tokens,
        }
