"""Long-term memory: turns that left a conversation's history window, kept for recall.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation", sa.Text, nullable=False),
        sa.Column("character_id", sa.Text, nullable=False),
        sa.Column("turn_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("speaker", sa.Text, nullable=False),
        sa.Column("user_text", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("said_at", sa.Float, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.UniqueConstraint("conversation", "turn_id", name="memories_once"),
        sqlite_autoincrement=True,
    )
    op.create_index("memories_by_conversation", "memories", ["conversation", "character_id", "state"])
    op.create_index("memories_by_state", "memories", ["state"])


def downgrade() -> None:
    raise NotImplementedError("Greenroom does not downgrade a database")
