"""The database's tables, as the code queries them (the migrations in `migrations/` create them).

Everything that is state lives here, so several processes sharing one database serve one bot:
the character registry and its stories, chat settings (mode, character, allow/deny lists),
dialogue history and each conversation's long-term memories, link verdicts, the audit log, uploaded
character files, lorebooks and what they are attached to, load leases and the order of each
conversation's turns across processes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

characters = Table(
    "characters",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("system_prompt", Text, nullable=False),
    Column("greeting", Text, nullable=False),
    Column("speaker_aliases", Text, nullable=False),
    Column("settings", Text, nullable=False),
    Column("source_format", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("embedder", Text, nullable=False),
    Column("tokenizer", Text, nullable=False),
    Column("loaded_at", Float, nullable=False),
    Column("source", Text, nullable=False, server_default="{}"),
    Column("extra", Text, nullable=False, server_default="{}"),
    Column("index_name", Text, nullable=False, server_default=""),  # its vectors in the memory store
)

stories = Table(
    "stories",
    metadata,
    Column("character_id", Text, ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
)

turns = Table(
    "turns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation", Text, nullable=False),
    Column("character_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("speaker", Text, nullable=False),
    Column("user_text", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("reply_raw", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("turns_by_conversation", "conversation", "character_id", "id"),
)

memories = Table(  # turns that left the history window, kept for recall (memory/long_term.py)
    "memories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # never reused: it names the vector point
    Column("conversation", Text, nullable=False),
    Column("character_id", Text, nullable=False),
    Column("turn_id", Integer, nullable=False),  # the history turn it was copied from
    Column("user_id", Text, nullable=False),
    Column("speaker", Text, nullable=False),
    Column("user_text", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("said_at", Float, nullable=False),
    Column("state", SmallInteger, nullable=False),  # long_term.PENDING, KEPT, FORGOTTEN, PURGED
    UniqueConstraint("conversation", "turn_id", name="memories_once"),
    Index("memories_by_conversation", "conversation", "character_id", "state"),
    Index("memories_by_state", "state"),
    sqlite_autoincrement=True,
)

settings = Table(
    "settings",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

link_verdicts = Table(
    "link_verdicts",
    metadata,
    Column("url", Text, primary_key=True),
    Column("verdict", Text, nullable=False),
    Column("at", Float, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False),
    Column("who", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("place", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("args", Text, nullable=False),
    Column("outcome", Text, nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("character_id", Text, primary_key=True),
    Column("filename", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("at", Float, nullable=False),
)

leases = Table(  # work one process does for all: loading a character (name "load:<id>")
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),  # host:pid
    Column("expires_at", Float, nullable=False),
    Column("index_name", Text, nullable=False, server_default=""),  # the index it is writing
)

conversation_turns = Table(  # messages waiting or running, per conversation, in the platform's order
    "conversation_turns",
    metadata,
    Column("conversation", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),  # the platform's message id: increasing within a chat
    Column("holder", Text, nullable=False),  # host:pid of the process that took it
    Column("joined", Float, nullable=False),
    Column("at", Float, nullable=False),  # last renewed
)

lorebooks = Table(  # lorebooks loaded on their own (memory/lorebook_store.py)
    "lorebooks",
    metadata,
    Column("owner", Text, primary_key=True),  # "" = bot-wide, else the chat it was loaded in
    Column("id", Text, primary_key=True),  # a slug, unique per owner
    Column("name", Text, nullable=False),
    Column("book", Text, nullable=False),  # the normalised book (memory/lorebooks.py), JSON
    Column("source", Text, nullable=False),  # the file it came from
    Column("entries", Integer, nullable=False),  # how many entries the book has, for listings
    Column("created_at", Float, nullable=False),  # of this version: a reload changes it
)

lorebook_uses = Table(  # which characters and chats a lorebook is attached to
    "lorebook_uses",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("lorebook_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # "character" or "chat"
    Column("target", Text, primary_key=True),  # the character id, or the chat
    ForeignKeyConstraint(
        ["owner", "lorebook_id"], ["lorebooks.owner", "lorebooks.id"], name="lorebook_uses_book", ondelete="CASCADE"
    ),
    Index("lorebook_uses_by_target", "kind", "target"),
)
