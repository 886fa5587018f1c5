"""Lorebooks of their own (World Info files), and the characters and chats they are attached to.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lorebooks",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("book", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "lorebook_uses",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("lorebook_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, primary_key=True),
        sa.ForeignKeyConstraint(
            ["owner", "lorebook_id"],
            ["lorebooks.owner", "lorebooks.id"],
            name="lorebook_uses_book",
            ondelete="CASCADE",
        ),
    )
    op.create_index("lorebook_uses_by_target", "lorebook_uses", ["kind", "target"])


def downgrade() -> None:
    raise NotImplementedError("Greenroom does not downgrade a database")
