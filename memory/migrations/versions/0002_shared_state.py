"""Shared state: the audit log and uploaded files move into the database; load leases; turn order.

Greenroom 0.1 kept the audit log as JSON lines in `audit.log` and uploaded character files under
`uploads/` in the data folder. Both are copied into the database here (the files stay where they
are, untouched), so every process sharing the database sees them. Characters also name their
vector index explicitly (`index_name`), so a reload or an import can switch it in one step.

Revision ID: 0002
Revises: 0001
"""

import json
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("characters", sa.Column("index_name", sa.Text, nullable=False, server_default=""))
    op.execute("UPDATE characters SET index_name = id || '-' || version")
    audit = op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *(
            sa.Column(name, sa.Text, nullable=False)
            for name in ("at", "who", "name", "place", "scope", "command", "args", "outcome")
        ),
    )
    uploads = op.create_table(
        "uploads",
        sa.Column("character_id", sa.Text, primary_key=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("index_name", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "conversation_turns",
        sa.Column("conversation", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("joined", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    data_dir = context.config.attributes.get("data_dir")
    if data_dir is not None:
        _import_audit_log(Path(data_dir) / "audit.log", audit)
        _import_uploads(Path(data_dir) / "uploads", uploads)


def _import_audit_log(path: Path, audit: sa.Table) -> None:
    """Greenroom 0.1's audit.log lines, in order."""
    if not path.is_file():
        return
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            rows.append(
                {
                    "at": e["when"],
                    "who": e["who"],
                    "name": e.get("name", ""),
                    "place": e["where"],
                    "scope": e.get("scope", "bot"),
                    "command": e["command"],
                    "args": e.get("args", ""),
                    "outcome": e.get("outcome", ""),
                }
            )
    if rows:
        op.bulk_insert(audit, rows)


def _import_uploads(folder: Path, uploads: sa.Table) -> None:
    """Characters loaded from a file kept under uploads/: the file's bytes into the database."""
    bind = op.get_bind()
    for cid, raw in bind.execute(sa.text("SELECT id, source FROM characters")).all():
        source = json.loads(raw or "{}")
        kept = Path(source.get("path", ""))
        if not source.get("path") or folder.resolve() not in kept.resolve().parents or not kept.is_file():
            continue
        op.bulk_insert(
            uploads, [{"character_id": cid, "filename": kept.name, "data": kept.read_bytes(), "at": time.time()}]
        )
        moved = {k: v for k, v in source.items() if k != "path"} | {"upload": kept.name}
        bind.execute(
            sa.text("UPDATE characters SET source = :source WHERE id = :id"),
            {"source": json.dumps(moved, ensure_ascii=False), "id": cid},
        )


def downgrade() -> None:
    raise NotImplementedError("Greenroom does not downgrade a database")
