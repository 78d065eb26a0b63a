"""Initial metadata schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("write_key", sa.String(64), nullable=False, unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("own_domains", sa.JSON, nullable=False),
        sa.Column("channel_rules", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "identities",
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("distinct_id", sa.String(300), primary_key=True),
        sa.Column("person_id", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_identities_person", "identities", ["source_id", "person_id"])
    op.create_table(
        "person_overrides",
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("old_person_id", sa.BigInteger, primary_key=True),
        sa.Column("new_person_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("min_ts", sa.BigInteger, nullable=True),
        sa.Column("max_ts", sa.BigInteger, nullable=True),
        sa.Column("min_received", sa.BigInteger, nullable=True),
        sa.Column("max_received", sa.BigInteger, nullable=True),
        sa.Column("min_person", sa.BigInteger, nullable=True),
        sa.Column("max_person", sa.BigInteger, nullable=True),
        sa.Column("origin", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_segments_source_live", "segments", ["source_id", "retired_at"])
    op.create_table(
        "wal_checkpoints",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("file_seq", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rejected",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
    )
    op.create_index("ix_rejected_source", "rejected", ["source_id", "id"])


def downgrade() -> None:
    for table in ("rejected", "wal_checkpoints", "segments", "counters", "person_overrides", "identities",
                  "api_keys", "sources"):
        op.drop_table(table)
