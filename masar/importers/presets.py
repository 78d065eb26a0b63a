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
    """How one file row becomes one event row, as DuckDB SQL over the file's columns (plus the
    helper columns ``_ts`` and ``_currency``).

    ``fields`` holds the normalized fields the file provides; the importer fills in the rest
    (``type`` is always ``track``, ``original_timestamp`` the event time, the others NULL or
    empty JSON). ``error`` says why a row is refused (NULL when it is good), over the file's
    columns and the fields computed already (as ``STAGED_PREFIX + field``), so no expression runs
    twice; ``raw`` is the file's row as JSON, for the rejects file.
    """

    fields: dict[str, str]
    error: str
    raw: str


STAGED_PREFIX = "masar:"


def _is_number(type_name: str) -> bool:
    return any(t in type_name.upper() for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))


def absent(field: str) -> str:
    """SQL for a field the file does not provide: NULL of the field's type."""
    return f"CAST(NULL AS {_SQL_TYPES[str(NORMALIZED.field(field).type)]})"


_IMPORTER_FILLS = ("message_id", "type", "original_timestamp", "sent_at", "received_at", "properties", "traits",
                   "context")  # fmt: skip
_SQL_TYPES = {"string": "VARCHAR", "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "decimal128(18, 3)": "DECIMAL(18, 3)",
              "int64": "BIGINT", "int32": "INTEGER"}  # fmt: skip


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


def _json_text(column: str, type_name: str) -> str:
    """The JSON text of a column's value (``null`` for NULL). Text that reads as a number becomes a
    JSON number, written as a JSON writer writes it (``12.50`` → ``12.5``)."""
    c = ident(column)
    if type_name.upper() == "VARCHAR":
        return (
            f"CASE WHEN {c} IS NULL THEN 'null' WHEN regexp_full_match({c}, '-?(0|[1-9][0-9]{{0,14}})(\\.[0-9]+)?') "
            f"THEN CAST(json({c}) AS VARCHAR) ELSE CAST(to_json({c}) AS VARCHAR) END"
        )
    if type_name.upper() in _JSON_AS_WRITTEN:
        return f"coalesce(CAST(to_json({c}) AS VARCHAR), 'null')"
    # Decimals (``0.000``), floats, lists and structs: rewritten as a JSON writer writes them.
    return f"coalesce(CAST(json(to_json({c})) AS VARCHAR), 'null')"


# Types whose ``to_json`` text is already what a JSON writer writes.
_JSON_AS_WRITTEN = frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "BOOLEAN", "DOUBLE", "DATE", "TIMESTAMP",
                              "TIMESTAMP WITH TIME ZONE"})  # fmt: skip


def properties_expr(columns: dict[str, str], names: list[str]) -> str:
    """The columns ``names`` as one JSON object's text, keys in file order: the text of DuckDB's
    ``json_object`` (tests/importers hold it to that: stored ids hash this text), built by
    concatenation, which costs about a quarter less than building and writing a JSON document."""
    parts = []
    for i, name in enumerate(names):
        key = f"CAST(to_json({literal(name)}) AS VARCHAR)"
        parts += [literal("{" if i == 0 else ","), key, "':'", _json_text(name, columns[name])]
    return f"concat({', '.join(parts)}, '}}')"


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
    overrides: dict[str, str] | None = None,
) -> Plan:
    """SQL for one event per input row. ``columns`` maps the file's column names to DuckDB types.

    Without a ``message_id`` column (or override) the plan leaves the id out: the importer derives
    it from the row's content (see ``content_hash``).
    """
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
        return f"NULLIF(left(trim(CAST({col(field)} AS VARCHAR)), {limit}), '')"

    currency = f"upper(trim(CAST({col('currency')} AS VARCHAR)))" if col("currency") else "NULL"
    units = minor_units_expr("_currency")

    fields: dict[str, str] = {
        "event": literal(event_constant) if event_constant else text("event", 200),
        "ts": "_ts",
    }
    if "message_id" in mapping:
        fields["message_id"] = text("message_id", 100)
    for field in NORMALIZED.names:
        if field in fields or field in _IMPORTER_FILLS:
            continue
        if field == "currency":
            has_money = " OR ".join(f"{col(f)} IS NOT NULL" for f in MONEY_FIELDS if col(f)) or "false"
            fields[field] = f"CASE WHEN {has_money} OR {currency} IS NOT NULL THEN _currency END"
        elif not col(field):
            continue
        elif field in MONEY_FIELDS:
            fields[field] = money_expr(col(field), units)
        elif field == "quantity":
            fields[field] = f"TRY_CAST({col(field)} AS BIGINT)"
        elif field == "step":
            fields[field] = f"TRY_CAST({col(field)} AS INTEGER)"
        else:
            fields[field] = text(field)
    fields.update(overrides)
    if props:
        fields["properties"] = properties_expr(columns, props)

    def ref(field: str) -> str:
        return ident(STAGED_PREFIX + field) if field in fields else absent(field)

    checks = [
        "CASE WHEN _ts IS NULL THEN 'timestamp: not a valid time' END",
        "CASE WHEN _ts > now() + INTERVAL 1 DAY THEN 'timestamp: more than a day in the future' END",
        f"CASE WHEN {ref('user_id')} IS NULL AND {ref('anonymous_id')} IS NULL "
        "THEN 'user: the row has no user_id or anonymous_id' END",
        f"CASE WHEN {ref('event')} IS NULL THEN 'event: empty' END",
        "CASE WHEN NOT regexp_full_match(_currency, '[A-Z]{3}') THEN 'currency: not a three-letter code' END",
    ]
    if "message_id" in fields:
        checks.insert(4, f"CASE WHEN {ref('message_id')} IS NULL THEN 'message_id: empty' END")
    for field in MONEY_FIELDS:
        c = col(field)
        if not c:
            continue
        given = f"{c} IS NOT NULL AND trim(CAST({c} AS VARCHAR)) <> ''"
        if _is_number(columns[mapping[field]]):
            given = f"{c} IS NOT NULL"
        # The amount is NULL exactly when a given value does not parse, unless an override made it.
        unparsed = (
            f"{ref(field)} IS NULL" if fields.get(field) == money_expr(c, units) else
            f"TRY_CAST(trim(replace(CAST({c} AS VARCHAR), ',', '')) AS DECIMAL(18, 3)) IS NULL"
        )  # fmt: skip
        checks.append(f"CASE WHEN {given} AND {unparsed} THEN '{field}: not an amount' END")
    error = "NULLIF(concat_ws('; ', " + ", ".join(checks) + "), '')"
    raw = "to_json(struct_pack(" + ", ".join(f"{ident(c)} := {ident(c)}" for c in columns) + "))"
    return Plan(fields=fields, error=error, raw=f"CAST({raw} AS VARCHAR)")


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
