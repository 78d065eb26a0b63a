"""How a file's columns become normalized event columns, per preset, as DuckDB SQL.

Every expression is built from quoted identifiers of the file's own columns and from constants
the code controls; user values never enter the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from masar.errors import InvalidInput
from masar.model.money import _MINOR_UNITS
from masar.store.schema import ID_FIELDS, MONEY_FIELDS, NORMALIZED

MAPPABLE = frozenset(NORMALIZED.names) - {"properties", "traits", "context", "received_at", "ts"} | {"timestamp"}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parse_mapping(text: str | None) -> dict[str, str]:
    """``field=column,field=column`` → {field: column}."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InvalidInput(f"--map entries look like field=column, got {part.strip()!r}")
        field, column = (p.strip() for p in part.split("=", 1))
        if field not in MAPPABLE:
            raise InvalidInput(f"--map: unknown field {field!r}; fields are {', '.join(sorted(MAPPABLE))}")
        mapping[field] = column
    return mapping


@dataclass(frozen=True)
class Plan:
    """The SELECT list producing normalized columns plus ``_error`` (why a row is refused, or NULL)."""

    select: str
    order_by: str = "ts"


def _time_expr(column: str, numeric: bool) -> str:
    c = ident(column)
    if numeric:
        # epoch seconds or milliseconds
        return f"CASE WHEN abs({c}) > 1e11 THEN to_timestamp({c} / 1000.0) ELSE to_timestamp({c}) END"
    text = f"trim(CAST({c} AS VARCHAR))"
    return (
        f"CASE WHEN regexp_full_match({text}, '-?[0-9]+(\\.[0-9]+)?') THEN "
        f"(CASE WHEN abs(CAST({text} AS DOUBLE)) > 1e11 THEN to_timestamp(CAST({text} AS DOUBLE) / 1000.0) "
        f"ELSE to_timestamp(CAST({text} AS DOUBLE)) END) "
        f"ELSE TRY_CAST({text} AS TIMESTAMPTZ) END"
    )


def _json_value(column: str, type_name: str) -> str:
    c = ident(column)
    if type_name.upper() == "VARCHAR":
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN regexp_full_match({c}, '-?(0|[1-9][0-9]{{0,14}})(\\.[0-9]+)?') "
            f"THEN CAST({c} AS JSON) ELSE to_json({c}) END"
        )
    return f"to_json({c})"


def minor_units_expr(currency_expr: str) -> str:
    threes = ", ".join(literal(c) for c, u in _MINOR_UNITS.items() if u == 3)
    zeros = ", ".join(literal(c) for c, u in _MINOR_UNITS.items() if u == 0)
    return f"CASE WHEN {currency_expr} IN ({threes}) THEN 3 WHEN {currency_expr} IN ({zeros}) THEN 0 ELSE 2 END"


def money_expr(expr: str, units: str) -> str:
    raw = f"TRY_CAST(trim(replace(CAST({expr} AS VARCHAR), ',', '')) AS DECIMAL(18, 3))"
    return (
        f"CASE {units} WHEN 3 THEN {raw} WHEN 0 THEN CAST(round({raw}, 0) AS DECIMAL(18, 3)) "
        f"ELSE CAST(round({raw}, 2) AS DECIMAL(18, 3)) END"
    )


def build_plan(
    columns: dict[str, str],
    mapping: dict[str, str],
    *,
    default_currency: str,
    event_constant: str | None = None,
    message_id_prefix: str | None = None,
    overrides: dict[str, str] | None = None,
) -> Plan:
    """SQL for one event per input row. ``columns`` maps the file's column names to DuckDB types."""
    for field, column in mapping.items():
        if column not in columns:
            raise InvalidInput(f"the file has no column {column!r} (for {field}); it has {', '.join(columns)}")
    if "timestamp" not in mapping:
        raise InvalidInput("the file needs a timestamp column (map one with --map timestamp=COLUMN)")
    overrides = overrides or {}
    if "user_id" not in mapping and "anonymous_id" not in mapping and "anonymous_id" not in overrides:
        raise InvalidInput("the file needs a user_id or anonymous_id column (--map user_id=COLUMN)")
    if event_constant is None and "event" not in mapping:
        raise InvalidInput("the file needs an event column (--map event=COLUMN)")

    used = set(mapping.values())
    props = [c for c in columns if c not in used or c in {mapping.get(f) for f in (*ID_FIELDS, *MONEY_FIELDS)}]

    def col(field: str) -> str | None:
        column = mapping.get(field)
        return ident(column) if column else None

    def text(field: str, limit: int = 2048) -> str:
        c = col(field)
        return f"NULLIF(left(trim(CAST({c} AS VARCHAR)), {limit}), '')" if c else "CAST(NULL AS VARCHAR)"

    currency = f"upper(trim(CAST({col('currency')} AS VARCHAR)))" if col("currency") else "NULL"
    units = minor_units_expr("_currency")
    event_expr = literal(event_constant) if event_constant else text("event", 200)

    content = "to_json(struct_pack(" + ", ".join(f"{ident(c)} := {ident(c)}" for c in columns) + "))"
    if "message_id" in mapping:
        message_id = text("message_id", 100)
    else:
        prefix = literal(message_id_prefix or "import:")
        # Deterministic ids make re-imports add nothing; the occurrence number keeps identical rows apart.
        message_id = (
            f"{prefix} || md5({content}) || ':' || "
            f"row_number() OVER (PARTITION BY md5({content}) ORDER BY _row)"
        )

    properties = (
        "json_object(" + ", ".join(f"{literal(c)}, {_json_value(c, columns[c])}" for c in props) + ")"
        if props
        else "CAST('{}' AS JSON)"
    )
    select: dict[str, str] = {
        "message_id": message_id,
        "type": "'track'",
        "event": event_expr,
        "ts": "_ts",
        "original_timestamp": "_ts",
        "sent_at": "CAST(NULL AS TIMESTAMPTZ)",
        "received_at": "now()",
    }
    for field in NORMALIZED.names:
        if field in select or field in ("properties", "traits", "context"):
            continue
        if field in MONEY_FIELDS:
            select[field] = money_expr(col(field), units) if col(field) else "CAST(NULL AS DECIMAL(18, 3))"
        elif field == "currency":
            has_money = " OR ".join(f"{col(f)} IS NOT NULL" for f in MONEY_FIELDS if col(f)) or "false"
            select[field] = f"CASE WHEN {has_money} OR {currency} IS NOT NULL THEN _currency END"
        elif field in ("quantity",):
            select[field] = f"TRY_CAST({col(field)} AS BIGINT)" if col(field) else "CAST(NULL AS BIGINT)"
        elif field == "step":
            select[field] = f"TRY_CAST({col(field)} AS INTEGER)" if col(field) else "CAST(NULL AS INTEGER)"
        else:
            select[field] = text(field)
    select.update(overrides)
    select["properties"] = f"CAST({properties} AS VARCHAR)"
    select["traits"] = "'{}'"
    select["context"] = "'{}'"

    checks = [
        "CASE WHEN _ts IS NULL THEN 'timestamp: not a valid time' END",
        "CASE WHEN _ts > now() + INTERVAL 1 DAY THEN 'timestamp: more than a day in the future' END",
        f"CASE WHEN ({select['user_id']}) IS NULL AND ({select['anonymous_id']}) IS NULL "
        "THEN 'user: the row has no user_id or anonymous_id' END",
        f"CASE WHEN ({select['event']}) IS NULL THEN 'event: empty' END",
        f"CASE WHEN ({select['message_id']}) IS NULL THEN 'message_id: empty' END",
        "CASE WHEN NOT regexp_full_match(_currency, '[A-Z]{3}') THEN 'currency: not a three-letter code' END",
    ]
    for field in MONEY_FIELDS:
        c = col(field)
        if c:
            checks.append(
                f"CASE WHEN {c} IS NOT NULL AND trim(CAST({c} AS VARCHAR)) <> '' AND "
                f"TRY_CAST(trim(replace(CAST({c} AS VARCHAR), ',', '')) AS DECIMAL(18, 3)) IS NULL "
                f"THEN '{field}: not an amount' END"
            )
    error = "NULLIF(concat_ws('; ', " + ", ".join(checks) + "), '')"
    body = ",\n  ".join(f"{expr} AS {ident(name)}" for name, expr in select.items())
    return Plan(select=f"{body},\n  {error} AS _error,\n  {content} AS _raw")


def ts_and_currency_columns(columns: dict[str, str], mapping: dict[str, str], default_currency: str) -> str:
    """The helper columns the plan refers to (``_ts``, ``_currency``), computed once per row."""
    ts_type = columns[mapping["timestamp"]].upper()
    numeric_ts = any(t in ts_type for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL"))
    native_ts = "TIMESTAMP" in ts_type or ts_type == "DATE"
    c = ident(mapping["timestamp"])
    ts_expr = f"CAST({c} AS TIMESTAMPTZ)" if native_ts else _time_expr(mapping["timestamp"], numeric_ts)
    currency = f"upper(trim(CAST({ident(mapping['currency'])} AS VARCHAR)))" if "currency" in mapping else "NULL"
    return f"{ts_expr} AS _ts, coalesce(NULLIF({currency}, ''), {literal(default_currency)}) AS _currency"


EVENTS_PRESET = {"user_id": "user_id", "event": "event", "timestamp": "timestamp"}
OPTIONAL_EVENT_FIELDS = ("anonymous_id", "message_id", *ID_FIELDS, *MONEY_FIELDS, "currency", "quantity", "url",
                         "path", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
                         "user_agent", "country", "city", "step")  # fmt: skip
ORDER_COLUMNS = ("order_id", "customer_id", "created_at", "total", "currency", "subtotal", "tax", "shipping",
                 "discount", "coupon", "status")  # fmt: skip
