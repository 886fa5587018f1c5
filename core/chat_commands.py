"""The built-in chat commands, as plugin factories (entry points in ``greenroom.commands``).

Each factory takes the services and returns a `CommandSet`; the commands close over the services
they use, so a command never reaches for the whole application.
"""

from __future__ import annotations

import asyncio
import shlex

from greenroom.core.commands import ACL_CHATS, ACL_USERS, CommandSet, Context, Level, refusal
from greenroom.core.services import Services
from greenroom.core.video import OFF
from greenroom.memory.characters import CharacterError, slug

LOAD_USAGE = (
    "Usage: /character load PATH|URL [--name NAME], or send a character file with /character load as its caption"
)


def split_words(args: str) -> list[str]:
    """A command's arguments as words, quotes respected."""
    try:
        return shlex.split(args)
    except ValueError as e:
        raise CharacterError(f"could not read the arguments ({e})") from None


def take_options(words: list[str], *flags: str) -> dict[str, str] | None:
    """Takes each ``--flag VALUE`` out of ``words``; None when a flag lacks its value."""
    found = {}
    for flag in flags:
        if flag in words:
            at = words.index(flag)
            if at + 1 >= len(words):
                return None
            found[flag] = words[at + 1]
            del words[at : at + 2]
    return found


def characters(s: Services) -> CommandSet:
    """`/character load|reload|list|use|info|remove`."""
    service, library, persona, settings = s.characters, s.library, s.persona, s.settings
    commands = CommandSet()

    @commands.add(
        "character load",
        Level.ADMIN,
        "/character load URL|attached file [--name NAME]",
        "load or update a character (ChatHaruhi folder, .zip, .jsonl, or a card); owners: also a PATH",
    )
    async def load(ctx: Context, args: str) -> str:
        words = split_words(args)
        options = take_options(words, "--name")
        if options is None:
            return LOAD_USAGE
        name = options.get("--name")
        files = ctx.message.attachments
        if len(words) + len(files) != 1:
            return LOAD_USAGE
        if files:
            result, note = await service.load_upload(files[0], name)
        elif words[0].lower().startswith(("http://", "https://")):
            result, note = await service.load_url(words[0], name)
        elif ctx.level < Level.OWNER:  # a path on the bot's own machine
            return refusal("character load PATH", Level.OWNER, ctx.level)
        else:
            result, note = await asyncio.to_thread(service.load, words[0], name)
        character = result.character
        if not result.changed:
            return f"{character.name} ({character.id}) is already loaded with the same content."
        return (
            f"Loaded {character.name} ({character.id}): {result.stories} stories in {result.seconds:.1f} s "
            f"({note}). Use it here with /character use {character.id}"
        )

    @commands.add("character list", Level.USER, "/character list", "list the loaded characters")
    async def listing(ctx: Context, args: str) -> str:
        rows = library.summaries()
        if not rows:
            return "No characters are loaded. An admin can add one with /character load PATH."
        current = persona.character_id(ctx.message.key)
        lines = [f"{'*' if r['id'] == current else '-'} {r['id']}: {r['name']} ({r['stories']} stories)" for r in rows]
        return "Characters (* = this chat's):\n" + "\n".join(lines)

    @commands.add("character use", Level.CHAT_ADMIN, "/character use NAME", "switch this chat to a character")
    async def use(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /character use NAME"
        loaded = library.get(slug(args))
        settings.set(ctx.message.key.chat, "character", loaded.character.id)
        return f"This chat now talks to {loaded.character.name}."

    @commands.add("character info", Level.USER, "/character info [NAME]", "show a character's details")
    async def info(ctx: Context, args: str) -> str:
        loaded = library.get(slug(args) if args else persona.character_id(ctx.message.key))
        c = loaded.character
        details = ", ".join(f"{k}={v}" for k, v in sorted(c.settings.items())) or "defaults"
        lines = [
            f"{c.name} ({c.id}), from a {c.source_format}, version {loaded.version}",
            f"stories: {len(loaded.stories)} ({sum(s.tokens for s in loaded.stories)} tokens)",
            f"speaks as: {', '.join(c.speakers)}",
            f"settings: {details}",
        ]
        if c.greeting:
            lines.append(f"greeting: {c.greeting}")
        return "\n".join(lines)

    @commands.add("character remove", Level.OWNER, "/character remove NAME", "remove a character")
    async def remove(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /character remove NAME"
        cid = await asyncio.to_thread(service.remove, args)
        return f"Removed {cid}. Chats that used it are back to the default character."

    @commands.add(
        "character reload", Level.ADMIN, "/character reload NAME", "load a character again from where it came"
    )
    async def reload(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /character reload NAME"
        cid = slug(args)
        loaded = await service.reload(cid)
        if loaded is None:
            return f"{cid} was not loaded from a file I can read again; load it with /character load PATH."
        result, note = loaded
        if not result.changed:
            return f"{result.character.name} is unchanged."
        return f"Reloaded {result.character.name}: {result.stories} stories ({note})."

    return commands


def _memories(count: int) -> str:
    return f"{count} {'memory' if count == 1 else 'memories'}"


def conversation(s: Services) -> CommandSet:
    """`/reset`, `/reset all`, `/forget`, `/forget all`, `/iam` and `/mode`."""
    history, settings = s.history, s.settings
    commands = CommandSet()

    def clear(ctx: Context, only: str | None) -> tuple[int, int]:
        """History turns and memories removed from this conversation (``only``: one user's)."""
        key = str(ctx.message.key)
        turns = history.clear(key, only)
        return turns, s.long_term.forget(key, only)  # built on first use: it needs the memory store

    @commands.add("reset", Level.USER, "/reset", "forget your conversation history and memories here")
    async def reset(ctx: Context, args: str) -> str:
        if args:
            return "Usage: /reset (admins: /reset all)"
        only = None if ctx.message.is_direct else ctx.message.author.ref
        turns, memories = await asyncio.to_thread(clear, ctx, only)
        return f"Forgot our conversation ({turns} turns) and {_memories(memories)} of it. The character stays."

    @commands.add("reset all", Level.CHAT_ADMIN, "/reset all", "forget this whole conversation and its memories")
    async def reset_all(ctx: Context, args: str) -> str:
        turns, memories = await asyncio.to_thread(clear, ctx, None)
        return f"Forgot this conversation ({turns} turns) and {_memories(memories)} of it. The character stays."

    @commands.add("forget", Level.USER, "/forget", "clear what the character remembers of what you said here")
    async def forget(ctx: Context, args: str) -> str:
        if args:
            return "Usage: /forget (admins: /forget all)"
        only = None if ctx.message.is_direct else ctx.message.author.ref
        removed = await asyncio.to_thread(s.long_term.forget, str(ctx.message.key), only)
        return (
            f"Forgot {_memories(removed)} of what you said here; nothing you said so far will be remembered "
            "later. Our recent turns stay in the conversation (/reset clears them too)."
        )

    @commands.add("forget all", Level.CHAT_ADMIN, "/forget all", "clear everything the character remembers here")
    async def forget_all(ctx: Context, args: str) -> str:
        removed = await asyncio.to_thread(s.long_term.forget, str(ctx.message.key))
        return (
            f"Forgot {_memories(removed)} of this conversation; nothing said here so far will be remembered "
            "later. The recent turns stay in the conversation (/reset all clears them too)."
        )

    @commands.add("iam", Level.USER, "/iam [NAME]", "set the name the character knows you by")
    async def iam(ctx: Context, args: str) -> str:
        author = ctx.message.author
        if not args:
            settings.delete(author.ref, "iam")
            return f"The character knows you by your display name, {author.display_name}."
        name = " ".join(args.split())[:64]
        settings.set(author.ref, "iam", name)
        return f"In the story you are now {name}."

    @commands.add("mode", Level.CHAT_ADMIN, "/mode mention|all|off", "when I answer in this group")
    async def mode(ctx: Context, args: str) -> str:
        choices = {
            "mention": "I answer when mentioned or replied to.",
            "all": "I answer every message here.",
            "off": "I stay quiet here (commands still work).",
        }
        if args not in choices:
            current = settings.get(ctx.message.key.chat, "mode") or "mention"
            return f"Usage: /mode mention|all|off (now: {current})"
        settings.set(ctx.message.key.chat, "mode", args)
        return choices[args]

    return commands


def access(s: Services) -> CommandSet:
    """`/allow` and `/deny`: users in this chat (chat admins); chats, and users everywhere (bot admins)."""
    settings = s.settings
    commands = CommandSet()

    def user_ref(ctx: Context, who: str) -> str:
        return who if ":" in who else f"{ctx.message.key.platform}:{who}"

    def acl(verdict: str, kind: str):
        done = "allowed" if verdict == "allow" else "denied"

        async def run(ctx: Context, args: str) -> str:
            who, key = args.strip(), ctx.message.key
            if kind == "chat":
                ref = f"{key.platform}:{who}" if who else key.chat
                settings.set(ACL_CHATS, ref, verdict)
                return f"Chat {ref} is now {done} (bot-wide)."
            if not who or " " in who:
                return f"Usage: /{verdict} {kind} ID"
            ref = user_ref(ctx, who)
            if kind == "everywhere":
                settings.set(ACL_USERS, ref, verdict)
                return f"User {ref} is now {done} everywhere."
            settings.set(f"{ACL_USERS}:{key.chat}", ref, verdict)
            return f"User {ref} is now {done} in this chat."

        return run

    for verdict, what in (("allow", "serve only allowed"), ("deny", "ignore")):
        commands.add(f"{verdict} user", Level.CHAT_ADMIN, f"/{verdict} user ID", f"{what} users in this chat")(
            acl(verdict, "user")
        )
        commands.add(f"{verdict} chat", Level.ADMIN, f"/{verdict} chat [ID]", f"{what} chats (bot-wide)")(
            acl(verdict, "chat")
        )
        commands.add(f"{verdict} everywhere", Level.ADMIN, f"/{verdict} everywhere ID", f"{what} users in every chat")(
            acl(verdict, "everywhere")
        )
    return commands


def factcheck(s: Services) -> CommandSet:
    """`/factcheck URL` and the chat's switch and threshold."""
    checks, settings = s.factcheck, s.settings
    commands = CommandSet()

    @commands.add("factcheck", Level.USER, "/factcheck URL", "check a link for fake news (always answers)")
    async def check(ctx: Context, args: str) -> str:
        chat = ctx.message.key.chat
        if not args.strip():
            return (
                f"Usage: /factcheck URL. Links shared here are "
                f"{'checked' if checks.enabled(chat) else 'not checked'} automatically (/factcheck on|off; "
                f"flag threshold {checks.threshold(chat):g})."
            )
        return await checks.on_request(ctx.message.key, args.split()[0])

    def switch(state: str):
        async def run(ctx: Context, args: str) -> str:
            settings.set(ctx.message.key.chat, "factcheck", state)
            if state == "on":
                return (
                    "Links shared here will be checked; I'll only speak up about ones that look likely fake "
                    f"(threshold {checks.threshold(ctx.message.key.chat):g})."
                )
            return "Links shared here will not be checked (/factcheck URL still works)."

        return run

    commands.add("factcheck on", Level.CHAT_ADMIN, "/factcheck on", "check links shared in this chat")(switch("on"))
    commands.add("factcheck off", Level.CHAT_ADMIN, "/factcheck off", "stop checking links here")(switch("off"))

    @commands.add(
        "factcheck threshold",
        Level.CHAT_ADMIN,
        "/factcheck threshold 0..1",
        "how likely fake a link must be to be flagged here",
    )
    async def threshold(ctx: Context, args: str) -> str:
        try:
            value = float(args)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 1:
            return (
                "Usage: /factcheck threshold 0..1 (e.g. 0.7: flag links the detector puts at 70% likely fake or more)"
            )
        settings.set(ctx.message.key.chat, "factcheck_threshold", f"{value:g}")
        return f"Links here are flagged at {value:g} or more."

    return commands


def status(s: Services) -> CommandSet:
    """`/status`: the chat's character, the model and the queue."""
    persona, dispatcher = s.persona, s.dispatcher
    commands = CommandSet()

    @commands.add("status", Level.USER, "/status", "show the character, model and queue")
    async def show(ctx: Context, args: str) -> str:
        return (
            f"character: {persona.character_id(ctx.message.key)}; model: {persona.llm.name}; "
            f"queued messages: {dispatcher.queued}"
        )

    return commands


def video(s: Services) -> CommandSet:
    """`/video ask QUESTION`: a question for the video model about the last clip or photo here."""
    desk = s.video
    commands = CommandSet()

    @commands.add("video ask", Level.USER, "/video ask QUESTION", "ask the video model about the last clip here")
    async def ask(ctx: Context, args: str) -> str:
        if not desk.enabled:
            return OFF
        if not args.strip():
            return "Usage: /video ask QUESTION (about the last clip or photo shared here)."
        await desk.on_followup(ctx, args.strip())
        return ""

    return commands
