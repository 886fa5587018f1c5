"""`/lore load|list|info|use|remove`: lorebooks in chat, as a command plugin (``greenroom.commands``).

A chat admin loads, uses and removes lorebooks for their own chat; attaching one to a character
(``--character``) or removing a bot-wide one takes a bot admin. Everyone sees the bot-wide books
and this chat's own, never another chat's.
"""

from __future__ import annotations

from greenroom.core.chat_commands import split_words, take_options
from greenroom.core.commands import CommandSet, Context, Level, refusal
from greenroom.core.services import Services
from greenroom.memory.lorebook_store import BOT_WIDE, CHARACTER, CHAT, Lorebook

LOAD_USAGE = (
    "Usage: /lore load [URL] [--character NAME] [--name NAME], with a lorebook file (World Info .json) "
    "sent with /lore load as its caption, or its link"
)


def _whose(book: Lorebook) -> str:
    return "bot-wide" if book.owner == BOT_WIDE else "this chat's own"


def lore(s: Services) -> CommandSet:
    """The lorebook commands."""
    books, persona = s.lorebooks, s.persona
    commands = CommandSet()

    @commands.add(
        "lore load",
        Level.CHAT_ADMIN,
        "/lore load [URL] [--character NAME] [--name NAME]",
        "load a lorebook (World Info) for this chat from a file sent with it or a link; bot admins: for a character",
    )
    async def load(ctx: Context, args: str) -> str:
        words = split_words(args)
        options = take_options(words, "--character", "--name")
        if options is None:
            return LOAD_USAGE
        character = options.get("--character")
        if character and ctx.level < Level.ADMIN:
            return refusal("lore load --character", Level.ADMIN, ctx.level)
        files, chat = ctx.message.attachments, ctx.message.key.chat
        if len(words) + len(files) != 1:
            return LOAD_USAGE
        target = {"name": options.get("--name"), "character": character, "chat": None if character else chat}
        if files:
            return await books.load_upload(files[0], chat, **target)
        if words[0].lower().startswith(("http://", "https://")):
            return await books.load_url(words[0], chat, **target)
        return "A lorebook comes as a file sent with /lore load as its caption, or as a link; never a path."

    @commands.add("lore list", Level.USER, "/lore list", "list the lorebooks this chat can use")
    async def listing(ctx: Context, args: str) -> str:
        chat = ctx.message.key.chat
        here = {(CHAT, chat), (CHARACTER, persona.character_id(ctx.message.key))}
        rows = books.visible(chat)
        if not rows:
            return "No lorebooks here. A chat admin can add one with /lore load and a World Info file."
        lines = [
            f"{'*' if here & set(b.uses) else '-'} {b.id}: {b.name} ({b.entries} entries, {_whose(b)})" for b in rows
        ]
        return "Lorebooks (* = in use here):\n" + "\n".join(lines)

    @commands.add("lore info", Level.USER, "/lore info NAME", "show a lorebook's details")
    async def info(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /lore info NAME"
        chat = ctx.message.key.chat
        book = books.find(args, chat)
        characters = [target for kind, target in book.uses if kind == CHARACTER]
        return "\n".join(
            [
                f"{book.name} ({book.id}), {_whose(book)}, from {book.source}: {book.entries} entries",
                f"characters: {', '.join(characters) or 'none'}",
                f"used in this chat: {'yes' if (CHAT, chat) in book.uses else 'no'}",
            ]
        )

    @commands.add("lore use", Level.CHAT_ADMIN, "/lore use NAME", "use a bot-wide lorebook, or this chat's, here")
    async def use(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /lore use NAME"
        book = books.use(args, ctx.message.key.chat)
        return f"This chat now uses the lorebook {book.id} ({book.entries} entries)."

    @commands.add(
        "lore remove",
        Level.CHAT_ADMIN,
        "/lore remove NAME",
        "remove this chat's lorebook, or stop using a bot-wide one here; bot admins: remove a bot-wide one",
    )
    async def remove(ctx: Context, args: str) -> str:
        if not args:
            return "Usage: /lore remove NAME"
        chat = ctx.message.key.chat
        book = books.find(args, chat)
        if book.owner == chat or ctx.level >= Level.ADMIN:
            books.remove(book)
            return f"Removed the lorebook {book.id} ({_whose(book)}) from every character and chat that used it."
        if books.detach(book, chat):
            return f"This chat no longer uses the bot-wide lorebook {book.id}; it stays for the others."
        return refusal("lore remove (a bot-wide lorebook)", Level.ADMIN, ctx.level)

    return commands
