"""The columns of an event, in the order segments store them.

Two stages share one list: capture and import produce the *normalized* columns (what the
message said, validated), and enrichment adds the *enriched* ones (who, which session, which
channel, which device). Arbitrary properties, traits and the rest of the context stay whole as
JSON text; the fields that analyses filter and group on most are real columns.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 3)

MONEY_FIELDS = ("price", "revenue", "total", "subtotal", "tax", "shipping", "discount")
ID_FIELDS = ("order_id", "checkout_id", "cart_id", "product_id", "sku", "category", "brand", "coupon")

NORMALIZED = pa.schema(
    [
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("ts", TS),
        ("original_timestamp", TS),
        ("sent_at", TS),
        ("received_at", TS),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("previous_id", pa.string()),
        ("group_id", pa.string()),
        ("url", pa.string()),
        ("path", pa.string()),
        ("referrer", pa.string()),
        ("title", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        ("utm_term", pa.string()),
        ("utm_content", pa.string()),
        ("click_id", pa.string()),
        ("user_agent", pa.string()),
        ("ip", pa.string()),
        ("locale", pa.string()),
        ("timezone", pa.string()),
        ("country", pa.string()),
        ("city", pa.string()),
        ("library_name", pa.string()),
        ("library_version", pa.string()),
        *[(name, pa.string()) for name in ID_FIELDS],
        ("currency", pa.string()),
        *[(name, MONEY) for name in MONEY_FIELDS],
        ("quantity", pa.int64()),
        ("step", pa.int32()),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
    ]
)

ENRICHED = pa.schema(
    [
        ("person_id", pa.int64()),
        ("session_id", pa.int64()),
        ("session_start", TS),
        ("channel", pa.string()),
        ("session_source", pa.string()),
        ("session_medium", pa.string()),
        ("session_campaign", pa.string()),
        ("referrer_domain", pa.string()),
        ("device_type", pa.string()),
        ("browser", pa.string()),
        ("os", pa.string()),
    ]
)

EVENTS = pa.schema(list(NORMALIZED) + list(ENRICHED))

NORMALIZED_NAMES = tuple(NORMALIZED.names)
EVENT_NAMES = tuple(EVENTS.names)
