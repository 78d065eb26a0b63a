"""Metadata in SQLite through SQLAlchemy: sources, keys, identities, the segment registry, quarantine.

SQLite in WAL mode lets the server and the CLI use one data directory at the same time: readers
never block, and writers take the database lock only for short transactions (``BEGIN
IMMEDIATE``, so two writers queue instead of failing half-way).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("write_key", sa.String(64), nullable=False, unique=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("own_domains", sa.JSON, nullable=False),
    sa.Column("channel_rules", sa.JSON, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("distinct_id", sa.String(300), primary_key=True),
    sa.Column("person_id", sa.BigInteger, nullable=False),
    sa.Index("ix_identities_person", "source_id", "person_id"),
)

person_overrides = sa.Table(
    "person_overrides",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("old_person_id", sa.BigInteger, primary_key=True),
    sa.Column("new_person_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

funnel_templates = sa.Table(
    "funnel_templates",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

exchange_rates = sa.Table(
    "exchange_rates",
    metadata,
    # One unit of ``base`` is worth ``rate`` units of ``quote`` on ``day`` (exact decimal text).
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("base", sa.String(3), primary_key=True),
    sa.Column("quote", sa.String(3), primary_key=True),
    sa.Column("rate", sa.String(40), nullable=False),
)

ad_spend = sa.Table(
    "ad_spend",
    metadata,
    # One row per day, channel and campaign; importing a row again replaces it (idempotent).
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("channel", sa.String(200), primary_key=True),
    sa.Column("campaign", sa.String(300), primary_key=True),
    sa.Column("spend", sa.String(40), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
)

sales_targets = sa.Table(
    "sales_targets",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),  # YYYY-MM
    sa.Column("revenue", sa.String(40), nullable=True),
    sa.Column("orders", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

audiences = sa.Table(
    "audiences",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

saved_funnels = sa.Table(
    "saved_funnels",
    metadata,
    sa.Column("source_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),  # a funnel query without kind and source
    sa.Column("saved_by", sa.String(320), nullable=True),  # the dashboard user's email
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # stored lower-cased
    sa.Column("password_hash", sa.String(200), nullable=False),  # argon2id
    sa.Column("role", sa.String(16), nullable=False),  # owner | analyst | viewer
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the cookie's token
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

app_settings = sa.Table(
    "app_settings",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

segments = sa.Table(
    "segments",
    metadata,
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
    sa.Index("ix_segments_source_live", "source_id", "retired_at"),
)

wal_checkpoints = sa.Table(
    "wal_checkpoints",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("file_seq", sa.BigInteger, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
)

rejected = sa.Table(
    "rejected",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.Integer, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Index("ix_rejected_source", "source_id", "id"),
)


def create_engine(path: Path) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy not emit BEGIN itself: we issue BEGIN IMMEDIATE in `begin` below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
