"""The plain reference for capture's normalization: the per-field implementation that
``masar.capture.normalize.normalize_values`` was optimized from (kept here, unoptimized, so that
property tests can compare the two on any message).

It reuses normalize's small helpers (time parsing, IP truncation, URL parts, country), which have
their own tests; what it pins is the order of checks, the codes, and every output column.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from masar.capture.normalize import (
    _KNOWN_KEYS,
    _UTM_KEYS,
    MAX_EVENT_NAME,
    MAX_MESSAGE_ID,
    MIN_EVENT_US,
    CaptureContext,
    MessageRejected,
    _apply_ga4_aliases,
    _object,
    _optional_id,
    _text,
    _url_parts,
    country_of,
    parse_time_us,
    truncate_ip,
)
from masar.model.events import GA4_EVENT_ALIASES, MESSAGE_TYPES, TYPE_EVENT_NAMES
from masar.model.money import MoneyError, normalize_currency, parse_amount
from masar.store.schema import ID_FIELDS, MONEY_FIELDS


def reference_normalize(msg: object, ctx: CaptureContext, *, batch_sent_at: object = None) -> dict[str, Any]:
    """One message → one normalized row (see ``masar.store.schema.NORMALIZED``)."""
    if not isinstance(msg, dict):
        raise MessageRejected("invalid_message", f"a message must be a JSON object, got {type(msg).__name__}")
    mtype = msg.get("type")
    if mtype not in MESSAGE_TYPES:
        raise MessageRejected(
            "invalid_type", f"type must be one of {', '.join(MESSAGE_TYPES)}, got {str(mtype)[:40]!r}"
        )

    message_id = msg.get("messageId")
    if message_id is None or message_id == "":
        message_id = str(uuid.uuid4())
    elif not isinstance(message_id, str):
        raise MessageRejected("invalid_message_id", "messageId must be a string")
    elif len(message_id) > MAX_MESSAGE_ID:
        raise MessageRejected("invalid_message_id", f"messageId is longer than {MAX_MESSAGE_ID} characters")

    anonymous_id = _optional_id(msg, "anonymousId")
    user_id = _optional_id(msg, "userId")
    if anonymous_id is None and user_id is None:
        raise MessageRejected("missing_identity", "a message needs a userId or an anonymousId")

    properties = _object(msg, "properties")
    traits = _object(msg, "traits")
    context = dict(_object(msg, "context"))
    original_event: str | None = None

    if mtype == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event.strip():
            raise MessageRejected("missing_event", "a track message needs a non-empty event name")
        if len(event) > MAX_EVENT_NAME:
            raise MessageRejected("invalid_event", f"event is longer than {MAX_EVENT_NAME} characters")
        alias = GA4_EVENT_ALIASES.get(event)
        if alias is not None:
            original_event, event = event, alias
            properties = _apply_ga4_aliases(properties)
    else:
        event = TYPE_EVENT_NAMES[mtype]
        if mtype in ("page", "screen"):
            name = _text(msg.get("name"), 200)
            if name is not None and "name" not in properties:
                properties = {**properties, "name": name}

    previous_id = _optional_id(msg, "previousId")
    if mtype == "alias" and previous_id is None:
        raise MessageRejected("missing_previous_id", "an alias message needs a previousId")
    group_id = _optional_id(msg, "groupId")
    if mtype == "group" and group_id is None:
        raise MessageRejected("missing_group_id", "a group message needs a groupId")

    # Times: the device clock is corrected by how far its sentAt is from our receivedAt.
    received = ctx.received_at_us
    original = msg.get("originalTimestamp")
    if original is None:
        original = msg.get("timestamp")
    sent_raw = msg.get("sentAt", batch_sent_at)
    original_us = parse_time_us(original, "originalTimestamp") if original is not None else None
    sent_us = parse_time_us(sent_raw, "sentAt") if sent_raw is not None else None
    if ctx.trust_timestamp and msg.get("timestamp") is not None:
        ts = parse_time_us(msg["timestamp"], "timestamp")
        if msg.get("receivedAt") is not None:
            received = parse_time_us(msg["receivedAt"], "receivedAt")
    elif original_us is not None and sent_us is not None:
        ts = received - (sent_us - original_us)
    elif original_us is not None:
        ts = original_us
    else:
        ts = received
    if ts > ctx.received_at_us + ctx.max_future_us:
        raise MessageRejected("timestamp_in_future", "the event time is more than a day in the future")
    if ts < MIN_EVENT_US:
        raise MessageRejected("invalid_timestamp", "the event time is before 1970")

    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    url = _text(properties.get("url")) if mtype == "page" else None
    url = url or _text(page.get("url"))
    path = (_text(properties.get("path")) if mtype == "page" else None) or _text(page.get("path"))
    referrer = (_text(properties.get("referrer")) if mtype == "page" else None) or _text(page.get("referrer"))
    if referrer is None and isinstance(context.get("referrer"), dict):
        referrer = _text(context["referrer"].get("url"))
    title = (_text(properties.get("title"), 500) if mtype == "page" else None) or _text(page.get("title"), 500)

    campaign = context.get("campaign") if isinstance(context.get("campaign"), dict) else {}
    utm = tuple(_text(campaign.get(key), 500) for key in _UTM_KEYS) if campaign else (None,) * len(_UTM_KEYS)
    click_id = None
    if url and "?" in url:
        url_path, url_utm, click_id = _url_parts(url)
        path = path or url_path
        if not any(utm):
            utm = url_utm

    library = context.get("library") if isinstance(context.get("library"), dict) else {}
    locale = _text(context.get("locale"), 35)
    timezone = _text(context.get("timezone"), 64)
    location = context.get("location") if isinstance(context.get("location"), dict) else {}
    ip = truncate_ip(context.get("ip") or ctx.request_ip)
    if "ip" in context:
        context["ip"] = ip  # the raw address is never written anywhere

    row: dict[str, Any] = {
        "message_id": message_id,
        "type": mtype,
        "event": event,
        "ts": ts,
        "original_timestamp": original_us,
        "sent_at": sent_us,
        "received_at": received,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "previous_id": previous_id,
        "group_id": group_id,
        "url": url,
        "path": path,
        "referrer": referrer,
        "title": title,
        "utm_source": utm[0],
        "utm_medium": utm[1],
        "utm_campaign": utm[2],
        "utm_term": utm[3],
        "utm_content": utm[4],
        "click_id": click_id,
        "user_agent": _text(context.get("userAgent"), 1024),
        "ip": ip,
        "locale": locale,
        "timezone": timezone,
        "country": country_of(location, timezone, locale),
        "city": _text(location.get("city"), 100),
        "library_name": _text(library.get("name"), 100),
        "library_version": _text(library.get("version"), 50),
    }
    if properties:
        for key in ID_FIELDS:
            row[key] = _text(properties.get(key), 256)
    else:
        for key in ID_FIELDS:
            row[key] = None
    step = properties.get("step")
    row["step"] = step if isinstance(step, int) and not isinstance(step, bool) and 0 <= step < 2**31 else None
    quantity = properties.get("quantity")
    row["quantity"] = (
        quantity if isinstance(quantity, int) and not isinstance(quantity, bool) and abs(quantity) < 2**62 else None
    )

    has_money = False
    for key in MONEY_FIELDS:
        if properties.get(key) is not None:
            has_money = True
            break
    currency = None
    if has_money or properties.get("currency") is not None:
        try:
            currency = (
                normalize_currency(properties["currency"])
                if properties.get("currency") is not None
                else ctx.default_currency
            )
            for key in MONEY_FIELDS:
                value = properties.get(key)
                row[key] = str(parse_amount(value, currency)) if value is not None else None
        except MoneyError as exc:
            raise MessageRejected("invalid_amount", f"properties: {exc}") from None
    else:
        for key in MONEY_FIELDS:
            row[key] = None
    row["currency"] = currency

    extra = {key: value for key, value in msg.items() if key not in _KNOWN_KEYS}
    if extra or original_event:
        context["masar"] = {**({"original_event": original_event} if original_event else {}), **extra}
    if msg.get("integrations"):
        context["integrations"] = msg["integrations"]
    row["properties"] = properties
    row["traits"] = traits if traits else (context.get("traits") if isinstance(context.get("traits"), dict) else {})
    row["context"] = context
    return row


def merge_batch_defaults(msg: object, defaults: Mapping[str, Any]) -> object:
    """A batch's top-level context and integrations apply to each message; the message's own keys win."""
    if not isinstance(msg, dict) or not defaults:
        return msg
    merged = dict(msg)
    for key in ("context", "integrations"):
        base = defaults.get(key)
        if isinstance(base, dict) and base:
            own = merged.get(key)
            merged[key] = {**base, **own} if isinstance(own, dict) else (own if own is not None else base)
    return merged
