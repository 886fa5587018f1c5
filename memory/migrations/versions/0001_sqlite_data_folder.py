"""The tables of a data folder from before migrations (Greenroom 0.1's SQLite), created if missing.

A data folder made by Greenroom 0.1 has some or all of these tables and no version stamp; this
revision brings it (or an empty database) to that schema without touching its rows.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "characters" not in existing:
        op.create_table(
            "characters",
            sa.Column("id", sa.Text, primary_key=True),
            *(
                sa.Column(name, sa.Text, nullable=False)
                for name in ("name", "system_prompt", "greeting", "speaker_aliases", "settings", "source_format")
            ),
            *(sa.Column(name, sa.Text, nullable=False) for name in ("version", "embedder", "tokenizer")),
            sa.Column("loaded_at", sa.Float, nullable=False),
            sa.Column("source", sa.Text, nullable=False, server_default="{}"),
            sa.Column("extra", sa.Text, nullable=False, server_default="{}"),
        )
    else:
        columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("characters")}
        for name in ("source", "extra"):  # data folders from before these existed
            if name not in columns:
                op.add_column("characters", sa.Column(name, sa.Text, nullable=False, server_default="{}"))
    if "stories" not in existing:
        op.create_table(
            "stories",
            sa.Column("character_id", sa.Text, sa.ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("idx", sa.Integer, primary_key=True),
            sa.Column("source", sa.Text, nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("tokens", sa.Integer, nullable=False),
        )
    if "turns" not in existing:
        op.create_table(
            "turns",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            *(
                sa.Column(name, sa.Text, nullable=False)
                for name in ("conversation", "character_id", "user_id", "speaker", "user_text", "reply", "reply_raw")
            ),
            sa.Column("created_at", sa.Float, nullable=False),
            sqlite_autoincrement=True,
        )
        op.create_index("turns_by_conversation", "turns", ["conversation", "character_id", "id"])
    if "settings" not in existing:
        op.create_table(
            "settings",
            sa.Column("scope", sa.Text, primary_key=True),
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
    if "link_verdicts" not in existing:
        op.create_table(
            "link_verdicts",
            sa.Column("url", sa.Text, primary_key=True),
            sa.Column("verdict", sa.Text, nullable=False),
            sa.Column("at", sa.Float, nullable=False),
        )


def downgrade() -> None:
    raise NotImplementedError("Greenroom does not downgrade a database")
