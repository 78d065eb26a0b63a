"""Validate one Segment message and flatten it into a normalized event row.

This runs on the request path for every captured message, so it is plain dict work with no
per-call allocations beyond the row. A bad message raises :class:`MessageRejected` with a stable
code; the caller quarantines it and keeps the rest of the batch.

Rows carry times as integer microseconds since the epoch (UTC) and money as decimal strings, so
they round-trip through the write-ahead log's JSON exactly.
"""

from __future__ import annotations

import functools
import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from masar.model.events import GA4_EVENT_ALIASES, GA4_PROPERTY_ALIASES, MESSAGE_TYPES, TYPE_EVENT_NAMES
from masar.model.money import MoneyError, normalize_currency, parse_amount
from masar.store.schema import ID_FIELDS, MONEY_FIELDS, NORMALIZED_NAMES

MAX_MESSAGE_ID = 100
MAX_EVENT_NAME = 200
MAX_ID = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_EVENT_US = 0  # nothing before 1970

_KNOWN_KEYS = frozenset(
    {
        "type", "messageId", "anonymousId", "userId", "event", "name", "category", "properties",
        "traits", "context", "integrations", "timestamp", "originalTimestamp", "sentAt", "receivedAt",
        "previousId", "groupId", "writeKey", "version", "channel", "_metadata", "options",
    }
)  # fmt: skip
_UTM_KEYS = ("source", "medium", "name", "term", "content")  # context.campaign's keys
_UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")  # the URL's, same order


class MessageRejected(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CaptureContext:
    """What the server knows about a request beyond its body."""

    received_at_us: int
    default_currency: str = "USD"
    max_future_us: int = 24 * 3600 * 1_000_000
    request_ip: str | None = None
    # Exports (Segment's own) carry the final ``timestamp`` and ``receivedAt``: take them as they are.
    trust_timestamp: bool = False


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def parse_time_us(value: object, field: str) -> int:
    """ISO 8601 (``Z`` or offset; naive means UTC) or epoch seconds/milliseconds/microseconds → microseconds."""
    if isinstance(value, bool):
        raise MessageRejected("invalid_timestamp", f"{field} must be an ISO 8601 time, got {value!r}")
    if isinstance(value, int | float):
        if abs(value) > 1e14:  # epoch microseconds
            seconds = value / 1_000_000
        elif abs(value) > 1e11:  # epoch milliseconds
            seconds = value / 1000
        else:
            seconds = value
        if seconds != seconds or abs(seconds) > 1e11:
            raise MessageRejected("invalid_timestamp", f"{field} is not a valid time: {value!r}")
        return int(round(seconds * 1_000_000))
    if not isinstance(value, str) or not value:
        raise MessageRejected("invalid_timestamp", f"{field} must be an ISO 8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MessageRejected("invalid_timestamp", f"{field} is not an ISO 8601 time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _optional_id(msg: Mapping[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MessageRejected("invalid_field", f"{key} must be a string, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID:
        raise MessageRejected("invalid_field", f"{key} is longer than {MAX_ID} characters")
    return text


def _object(msg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageRejected("invalid_field", f"{key} must be a JSON object, got {type(value).__name__}")
    return value


def _text(value: object, limit: int = 2048) -> str | None:
    if type(value) is str:
        return value[:limit] if value else None
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        return None
    return str(value)[:limit]


def truncate_ip(value: object) -> str | None:
    """Privacy by default: IPv4 keeps /24, IPv6 keeps /48; anything unparsable is not stored."""
    if not isinstance(value, str) or not value:
        return None
    return _truncate_ip(value)


@functools.lru_cache(maxsize=65_536)
def _truncate_ip(value: str) -> str | None:
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0"  # the common case, without ipaddress
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@functools.cache
def _timezone_countries() -> dict[str, str]:
    import pytz

    mapping: dict[str, str] = {}
    for country, zones in pytz.country_timezones.items():
        for zone in zones:
            mapping.setdefault(zone, country.upper())
    return mapping


def country_of(location: Mapping[str, Any], timezone: str | None, locale: str | None) -> str | None:
    """ISO 3166 alpha-2 country: the client's own location, else its time zone, else its locale's region.

    No IP geolocation: that would need a database downloaded from outside.
    """
    country = location.get("country") if location else None
    if isinstance(country, str) and country.strip():
        text = country.strip()
        return text.upper() if len(text) == 2 else text
    return _country_from(timezone, locale)


@functools.lru_cache(maxsize=4096)
def _country_from(timezone: str | None, locale: str | None) -> str | None:
    if timezone:
        found = _timezone_countries().get(timezone)
        if found:
            return found
    if locale:
        parts = locale.replace("_", "-").split("-")
        if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
            return parts[-1].upper()
    return None


@functools.lru_cache(maxsize=16_384)
def _url_parts(url: str) -> tuple[str | None, tuple[str | None, ...], str | None]:
    """(path, utm values in _UTM_KEYS order, click-id name) of a page URL; cached, URLs repeat."""
    from masar.enrich.channels import click_id_from_query

    try:
        split = urlsplit(url)
        query = dict(parse_qsl(split.query, keep_blank_values=False))
    except ValueError:
        return None, (None,) * len(_UTM_KEYS), None
    utm = tuple(_text(query.get(param), 500) for param in _UTM_PARAMS)
    return split.path or None, utm, click_id_from_query(query) if query else None


def _apply_ga4_aliases(properties: dict[str, Any]) -> dict[str, Any]:
    renamed = {GA4_PROPERTY_ALIASES.get(key, key): value for key, value in properties.items()}
    products = renamed.get("products")
    if isinstance(products, list):
        renamed["products"] = [
            {GA4_PROPERTY_ALIASES.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item
            for item in products
        ]
    return renamed


_NO_IDS = (None,) * len(ID_FIELDS)
_NO_MONEY = (None,) * len(MONEY_FIELDS)
_NO_UTM = (None,) * len(_UTM_KEYS)
_PAGE_TYPES = frozenset({"page", "screen"})


@functools.lru_cache(maxsize=65_536, typed=True)
def _amount_text(value: int | float | str, currency: str) -> str:
    """``parse_amount`` as text, cached: a store's prices repeat (typed, so True is not 1)."""
    return str(parse_amount(value, currency))


@functools.lru_cache(maxsize=256)
def _sent_at_us(value: str) -> int:
    return parse_time_us(value, "sentAt")


def _amount(value: object, currency: str) -> str:
    if type(value) in (float, int, str):
        return _amount_text(value, currency)  # type: ignore[arg-type]
    return str(parse_amount(value, currency))


def normalize_message(msg: object, ctx: CaptureContext, *, batch_sent_at: object = None) -> dict[str, Any]:
    """One message → one normalized row (see ``masar.store.schema.NORMALIZED``), as a dict."""
    return dict(zip(NORMALIZED_NAMES, normalize_values(msg, ctx, batch_sent_at=batch_sent_at), strict=True))


def normalize_values(
    msg: object, ctx: CaptureContext, *, batch_sent_at: object = None, defaults: Mapping[str, Any] | None = None
) -> tuple[Any, ...]:
    """One message → its normalized values, in ``NORMALIZED`` column order.

    The capture hot path (about 20 µs per event before it was written this way): checks run in a
    fixed order so the first problem found is the one reported; common shapes take short paths.
    ``defaults`` are a batch's top-level ``context`` and ``integrations`` (``merge_batch_defaults``
    semantics, without copying the message). tests/capture/reference_normalize.py is the plain
    version it must agree with.
    """
    if not isinstance(msg, dict):
        raise MessageRejected("invalid_message", f"a message must be a JSON object, got {type(msg).__name__}")
    get = msg.get
    mtype = get("type")
    if mtype not in MESSAGE_TYPES:
        raise MessageRejected(
            "invalid_type", f"type must be one of {', '.join(MESSAGE_TYPES)}, got {str(mtype)[:40]!r}"
        )

    message_id = get("messageId")
    if message_id is None or message_id == "":
        message_id = str(uuid.uuid4())
    elif type(message_id) is not str and not isinstance(message_id, str):
        raise MessageRejected("invalid_message_id", "messageId must be a string")
    elif len(message_id) > MAX_MESSAGE_ID:
        raise MessageRejected("invalid_message_id", f"messageId is longer than {MAX_MESSAGE_ID} characters")

    anonymous_id = get("anonymousId")
    if type(anonymous_id) is not str or not anonymous_id or len(anonymous_id) > MAX_ID:
        anonymous_id = _optional_id(msg, "anonymousId")
    user_id = get("userId")
    if type(user_id) is not str or not user_id or len(user_id) > MAX_ID:
        user_id = _optional_id(msg, "userId")
    if anonymous_id is None and user_id is None:
        raise MessageRejected("missing_identity", "a message needs a userId or an anonymousId")

    properties = get("properties")
    if type(properties) is not dict:
        properties = _object(msg, "properties")
    traits = get("traits")
    if type(traits) is not dict:
        traits = _object(msg, "traits")
    own_context = get("context")
    integrations = get("integrations")
    if defaults:
        base = defaults.get("context")
        if isinstance(base, dict) and base:
            own_context = {**base, **own_context} if isinstance(own_context, dict) else (
                own_context if own_context is not None else base
            )
        base = defaults.get("integrations")
        if isinstance(base, dict) and base:
            integrations = {**base, **integrations} if isinstance(integrations, dict) else (
                integrations if integrations is not None else base
            )
    if own_context is None:
        context: dict[str, Any] = {}
    elif isinstance(own_context, dict):
        context = dict(own_context)
    else:
        raise MessageRejected("invalid_field", f"context must be a JSON object, got {type(own_context).__name__}")
    original_event: str | None = None

    if mtype == "track":
        event = get("event")
        if type(event) is not str or not event.strip():
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
        if mtype in _PAGE_TYPES:
            name = _text(get("name"), 200)
            if name is not None and "name" not in properties:
                properties = {**properties, "name": name}

    previous_id = _optional_id(msg, "previousId") if "previousId" in msg else None
    if mtype == "alias" and previous_id is None:
        raise MessageRejected("missing_previous_id", "an alias message needs a previousId")
    group_id = _optional_id(msg, "groupId") if "groupId" in msg else None
    if mtype == "group" and group_id is None:
        raise MessageRejected("missing_group_id", "a group message needs a groupId")

    # Times: the device clock is corrected by how far its sentAt is from our receivedAt.
    received = ctx.received_at_us
    original = get("originalTimestamp")
    if original is None:
        original = get("timestamp")
    sent_raw = get("sentAt", batch_sent_at)
    original_us = parse_time_us(original, "originalTimestamp") if original is not None else None
    if sent_raw is None:
        sent_us = None
    elif type(sent_raw) is str:
        sent_us = _sent_at_us(sent_raw)  # a batch's sentAt, shared by its messages
    else:
        sent_us = parse_time_us(sent_raw, "sentAt")
    if ctx.trust_timestamp and get("timestamp") is not None:
        ts = parse_time_us(msg["timestamp"], "timestamp")
        if get("receivedAt") is not None:
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

    context_get = context.get
    page = context_get("page")
    if not isinstance(page, dict):
        page = {}
    if mtype == "page":
        url = _text(properties.get("url")) or _text(page.get("url"))
        path = _text(properties.get("path")) or _text(page.get("path"))
        referrer = _text(properties.get("referrer")) or _text(page.get("referrer"))
        title = _text(properties.get("title"), 500) or _text(page.get("title"), 500)
    elif page:
        url = _text(page.get("url"))
        path = _text(page.get("path"))
        referrer = _text(page.get("referrer"))
        title = _text(page.get("title"), 500)
    else:
        url = path = referrer = title = None
    if referrer is None:
        context_referrer = context_get("referrer")
        if isinstance(context_referrer, dict):
            referrer = _text(context_referrer.get("url"))

    campaign = context_get("campaign")
    if isinstance(campaign, dict) and campaign:
        utm = tuple(_text(campaign.get(key), 500) for key in _UTM_KEYS)
    else:
        utm = _NO_UTM
    click_id = None
    if url and "?" in url:
        url_path, url_utm, click_id = _url_parts(url)
        path = path or url_path
        if not any(utm):
            utm = url_utm

    library = context_get("library")
    if not isinstance(library, dict):
        library = {}
    locale = _text(context_get("locale"), 35)
    timezone = _text(context_get("timezone"), 64)
    location = context_get("location")
    if not isinstance(location, dict):
        location = {}
    ip = truncate_ip(context_get("ip") or ctx.request_ip)
    if "ip" in context:
        context["ip"] = ip  # the raw address is never written anywhere

    if properties:
        pget = properties.get
        ids = tuple([
            (v[:256] or None) if type(v) is str else None if v is None else _text(v, 256)
            for v in map(pget, ID_FIELDS)
        ])  # _text(v, 256), inline for the common str and None
        step = pget("step")
        if not (type(step) is int or (isinstance(step, int) and not isinstance(step, bool))) or not 0 <= step < 2**31:
            step = None
        quantity = pget("quantity")
        if not (type(quantity) is int or (isinstance(quantity, int) and not isinstance(quantity, bool))) or not abs(
            quantity
        ) < 2**62:
            quantity = None
        currency_raw = pget("currency")
        money = tuple(map(pget, MONEY_FIELDS))
        currency = None
        if currency_raw is not None or money.count(None) != len(money):
            try:
                currency = normalize_currency(currency_raw) if currency_raw is not None else ctx.default_currency
                money = tuple([_amount(value, currency) if value is not None else None for value in money])
            except MoneyError as exc:
                raise MessageRejected("invalid_amount", f"properties: {exc}") from None
    else:
        ids, money, step, quantity, currency = _NO_IDS, _NO_MONEY, None, None, None

    extra = None if _KNOWN_KEYS.issuperset(msg) else {k: v for k, v in msg.items() if k not in _KNOWN_KEYS}
    if extra or original_event:
        context["masar"] = {**({"original_event": original_event} if original_event else {}), **(extra or {})}
    if integrations:
        context["integrations"] = integrations
    if not traits:
        context_traits = context_get("traits")
        traits = context_traits if isinstance(context_traits, dict) else {}
    return (
        message_id, mtype, event, ts, original_us, sent_us, received,
        anonymous_id, user_id, previous_id, group_id,
        url, path, referrer, title, *utm, click_id,
        _text(context_get("userAgent"), 1024), ip, locale, timezone,
        country_of(location, timezone, locale) if location else _country_from(timezone, locale),
        _text(location.get("city"), 100) if location else None,
        _text(library.get("name"), 100), _text(library.get("version"), 50),
        *ids, currency, *money, quantity, step,
        properties, traits, context,
    )  # fmt: skip


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
