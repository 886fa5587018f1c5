"""The built-in chat commands: characters, history, identity, help and status."""

from __future__ import annotations

import asyncio
import shlex

from core.commands import CommandRegistry, Context, Level
from memory.characters import CharacterError, slug

commands = CommandRegistry()


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args)
    except ValueError as e:
        raise CharacterError(f"could not read the arguments ({e})") from None


LOAD_USAGE = ("Usage: /character load PATH|URL [--name NAME], or send a character file with /character load "
              "as its caption")


@commands.add("character load", Level.ADMIN, "/character load PATH|URL|attached file [--name NAME]",
              "load or update a character (ChatHaruhi folder, .zip, .jsonl, or a card)")
async def character_load(ctx: Context, args: str) -> str:
    words = _split(args)
    name = None
    if "--name" in words:
        at = words.index("--name")
        if at + 1 >= len(words):
            return LOAD_USAGE
        name = words[at + 1]
        del words[at:at + 2]
    files = ctx.message.attachments
    if len(words) + len(files) != 1:
        return LOAD_USAGE
    if files:
        result, note = await ctx.app.load_upload(files[0], name)
    elif words[0].lower().startswith(("http://", "https://")):
        result, note = await ctx.app.load_url(words[0], name)
    else:
        result, note = await asyncio.to_thread(ctx.app.load_character, words[0], name)
    character = result.character
    if not result.changed:
        return f"{character.name} ({character.id}) is already loaded with the same content."
    return (f"Loaded {character.name} ({character.id}): {result.stories} stories in {result.seconds:.1f} s "
            f"({note}). Use it here with /character use {character.id}")


@commands.add("character list", Level.USER, "/character list", "list the loaded characters")
async def character_list(ctx: Context, args: str) -> str:
    rows = ctx.app.library.summaries()
    if not rows:
        return "No characters are loaded. An admin can add one with /character load PATH."
    current = ctx.app.persona.character_id(ctx.message.key)
    lines = [f"{'*' if r['id'] == current else '-'} {r['id']}: {r['name']} ({r['stories']} stories)" for r in rows]
    return "Characters (* = this chat's):\n" + "\n".join(lines)


@commands.add("character use", Level.ADMIN, "/character use NAME", "switch this chat to a character")
async def character_use(ctx: Context, args: str) -> str:
    if not args:
        return "Usage: /character use NAME"
    loaded = ctx.app.library.get(slug(args))
    ctx.app.settings.set(ctx.message.key.chat, "character", loaded.character.id)
    return f"This chat now talks to {loaded.character.name}."


@commands.add("character info", Level.USER, "/character info [NAME]", "show a character's details")
async def character_info(ctx: Context, args: str) -> str:
    cid = slug(args) if args else ctx.app.persona.character_id(ctx.message.key)
    loaded = ctx.app.library.get(cid)
    c = loaded.character
    settings = ", ".join(f"{k}={v}" for k, v in sorted(c.settings.items())) or "defaults"
    lines = [f"{c.name} ({c.id}), from a {c.source_format}, version {loaded.version}",
             f"stories: {len(loaded.stories)} ({sum(s.tokens for s in loaded.stories)} tokens)",
             f"speaks as: {', '.join(c.speakers)}", f"settings: {settings}"]
    if c.greeting:
        lines.append(f"greeting: {c.greeting}")
    return "\n".join(lines)


@commands.add("character remove", Level.OWNER, "/character remove NAME", "remove a character")
async def character_remove(ctx: Context, args: str) -> str:
    if not args:
        return "Usage: /character remove NAME"
    cid = slug(args)
    if not await asyncio.to_thread(ctx.app.library.remove, cid):
        return f"There is no character named '{cid}'."
    ctx.app.settings.forget_value("character", cid)
    return f"Removed {cid}. Chats that used it are back to the default character."


@commands.add("reset", Level.USER, "/reset", "forget your conversation history here")
async def reset(ctx: Context, args: str) -> str:
    if args:
        return "Usage: /reset (admins: /reset all)"
    only = None if ctx.message.is_direct else ctx.message.author.ref
    removed = ctx.app.history.clear(str(ctx.message.key), only)
    return f"Forgot our conversation ({removed} turns). The character stays."


@commands.add("reset all", Level.ADMIN, "/reset all", "forget this whole conversation")
async def reset_all(ctx: Context, args: str) -> str:
    removed = ctx.app.history.clear(str(ctx.message.key))
    return f"Forgot this conversation ({removed} turns). The character stays."


@commands.add("iam", Level.USER, "/iam [NAME]", "set the name the character knows you by")
async def iam(ctx: Context, args: str) -> str:
    author = ctx.message.author
    if not args:
        ctx.app.settings.delete(author.ref, "iam")
        return f"The character knows you by your display name, {author.display_name}."
    name = " ".join(args.split())[:64]
    ctx.app.settings.set(author.ref, "iam", name)
    return f"In the story you are now {name}."


@commands.add("help", Level.USER, "/help", "list the commands you can use")
async def help_(ctx: Context, args: str) -> str:
    lines = [f"{c.usage}: {c.help}" for c in ctx.app.commands.visible_to(ctx.level)]
    return "Commands:\n" + "\n".join(lines)


@commands.add("status", Level.USER, "/status", "show the character, model and queue")
async def status(ctx: Context, args: str) -> str:
    app = ctx.app
    return (f"character: {app.persona.character_id(ctx.message.key)}; model: {app.llm.name}; "
            f"queued messages: {app.dispatcher.queued}")


@commands.add("character reload", Level.ADMIN, "/character reload NAME", "load a character again from where it came")
async def character_reload(ctx: Context, args: str) -> str:
    if not args:
        return "Usage: /character reload NAME"
    cid = slug(args)
    source = ctx.app.library.source_of(cid)
    if not source:
        return f"{cid} was not loaded from a file I can read again; load it with /character load PATH."
    if source.get("url"):
        result, note = await ctx.app.load_url(source["url"], source.get("name"))
    else:
        result, note = await asyncio.to_thread(ctx.app.load_character, source["path"], source.get("name"))
    if not result.changed:
        return f"{result.character.name} is unchanged."
    return f"Reloaded {result.character.name}: {result.stories} stories ({note})."


@commands.add("mode", Level.ADMIN, "/mode mention|all|off", "when I answer in this group")
async def mode(ctx: Context, args: str) -> str:
    choices = {"mention": "I answer when mentioned or replied to.", "all": "I answer every message here.",
               "off": "I stay quiet here (commands still work)."}
    if args not in choices:
        current = ctx.app.settings.get(ctx.message.key.chat, "mode") or "mention"
        return f"Usage: /mode mention|all|off (now: {current})"
    ctx.app.settings.set(ctx.message.key.chat, "mode", args)
    return choices[args]


def _acl(verdict: str):
    async def run(ctx: Context, args: str) -> str:
        kind, _, who = args.partition(" ")
        key = ctx.message.key
        if kind == "chat":
            ref = f"{key.platform}:{who.strip()}" if who.strip() else key.chat
        elif kind == "user" and who.strip():
            ref = who.strip() if ":" in who else f"{key.platform}:{who.strip()}"
        else:
            return f"Usage: /{verdict} user ID | /{verdict} chat [ID]"
        ctx.app.settings.set(f"acl:{kind}", ref, verdict)
        return f"{kind.title()} {ref} is now {'allowed' if verdict == 'allow' else 'denied'}."
    return run


commands.add("allow", Level.ADMIN, "/allow user ID | /allow chat [ID]",
             "serve only allowed users or chats")(_acl("allow"))
commands.add("deny", Level.ADMIN, "/deny user ID | /deny chat [ID]", "ignore a user or chat")(_acl("deny"))


@commands.add("factcheck", Level.USER, "/factcheck URL", "check a link for fake news (always answers)")
async def factcheck(ctx: Context, args: str) -> str:
    chat = ctx.message.key.chat
    checks = ctx.app.factcheck
    if not args.strip():
        return (f"Usage: /factcheck URL. Links shared here are {'checked' if checks.enabled(chat) else 'not checked'} "
                f"automatically (/factcheck on|off; flag threshold {checks.threshold(chat):g}).")
    return await checks.on_request(ctx.message.key, args.split()[0])


def _factcheck_switch(state: str):
    async def run(ctx: Context, args: str) -> str:
        ctx.app.settings.set(ctx.message.key.chat, "factcheck", state)
        if state == "on":
            return ("Links shared here will be checked; I'll only speak up about ones that look likely fake "
                    f"(threshold {ctx.app.factcheck.threshold(ctx.message.key.chat):g}).")
        return "Links shared here will not be checked (/factcheck URL still works)."
    return run


commands.add("factcheck on", Level.ADMIN, "/factcheck on", "check links shared in this chat")(_factcheck_switch("on"))
commands.add("factcheck off", Level.ADMIN, "/factcheck off", "stop checking links here")(_factcheck_switch("off"))


@commands.add("factcheck threshold", Level.ADMIN, "/factcheck threshold 0..1", "how likely fake a link must be "
              "to be flagged here")
async def factcheck_threshold(ctx: Context, args: str) -> str:
    try:
        value = float(args)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        return "Usage: /factcheck threshold 0..1 (e.g. 0.7: flag links the detector puts at 70% likely fake or more)"
    ctx.app.settings.set(ctx.message.key.chat, "factcheck_threshold", f"{value:g}")
    return f"Links here are flagged at {value:g} or more."
