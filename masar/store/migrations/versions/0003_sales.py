"""Sales analytics: exchange rates, ad spend, monthly targets, saved audiences.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_rates",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("base", sa.String(3), primary_key=True),
        sa.Column("quote", sa.String(3), primary_key=True),
        sa.Column("rate", sa.String(40), nullable=False),
    )
    op.create_table(
        "ad_spend",
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("channel", sa.String(200), primary_key=True),
        sa.Column("campaign", sa.String(300), primary_key=True),
        sa.Column("spend", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    op.create_table(
        "sales_targets",
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("revenue", sa.String(40), nullable=True),
        sa.Column("orders", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audiences",
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for name in ("audiences", "sales_targets", "ad_spend", "exchange_rates"):
        op.drop_table(name)
