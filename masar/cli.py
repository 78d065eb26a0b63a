"""The command line: a thin Typer layer over the same store the HTTP handlers use."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from masar.errors import InvalidInput, MasarError

app = typer.Typer(help="Masar: sales-funnel analytics for online stores.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
sources_app = typer.Typer(help="Sources: the online stores that send events.", no_args_is_help=True)
keys_app = typer.Typer(help="Secret keys for the query API.", no_args_is_help=True)
events_app = typer.Typer(help="Look at stored events.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(keys_app, name="keys")
templates_app = typer.Typer(help="Funnel templates and their stages.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(templates_app, name="templates")

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The data directory (default: $MASAR_DATA_DIR, else ./masar-data).",
                 show_default=False),  # fmt: skip
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="The store: embedded (default), chdb://DIR or clickhouse://user:pw@host:8123/db "
                 "(default: $MASAR_STORE).", show_default=False),  # fmt: skip
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SourceName = Annotated[str, typer.Option("--source", help="The source (store) name.")]


def _settings(data_dir: Path | None, store_url: str | None = None, **extra: Any):
    from masar.config import Settings

    given = {"data_dir": data_dir} if data_dir is not None else {}
    if store_url is not None:
        given["store"] = store_url
    return Settings(**given, **extra)


def _open(data_dir: Path | None, store_url: str | None = None):
    from masar.store.open import open_store

    return open_store(_settings(data_dir, store_url))


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def edge(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User mistakes become one sentence on stderr and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MasarError as exc:
            # Escaped: a message quoting JSON ([conditions...]) is text, not Rich markup. soft_wrap:
            # one line whatever the width, for a terminal to wrap and a script to grep.
            err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except FileNotFoundError as exc:
            err.print(f"[red]error:[/red] no such file: {exc.filename}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


# -- sources and keys ---------------------------------------------------------------------------


@sources_app.command("create")
@edge
def sources_create(
    name: Annotated[str, typer.Argument(help="A name for the store.")],
    currency: Annotated[str, typer.Option(help="Default ISO 4217 currency of its orders.")] = "USD",
    timezone: Annotated[str, typer.Option(help="The store's reporting time zone.")] = "UTC",
    domain: Annotated[list[str] | None, typer.Option(help="The store's own domain (repeatable).")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Create a source and print its write key."""
    store = _open(data_dir, store_url)
    source = store.create_source(name, currency=currency, timezone=timezone, own_domains=tuple(domain or ()))
    if json:
        _print_json({"id": source.id, "name": source.name, "write_key": source.write_key})
    else:
        out.print(f"Created source [bold]{source.name}[/bold] (id {source.id}).")
        out.print(f"Write key: [bold]{source.write_key}[/bold]", highlight=False)


@sources_app.command("list")
@edge
def sources_list(data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """List sources with their write keys and event counts."""
    store = _open(data_dir, store_url)
    rows = [{**s.to_dict(), "events": store.count_events(s)} for s in store.sources()]
    if json:
        _print_json(rows)
        return
    table = Table("id", "name", "write key", "currency", "events")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["write_key"], row["currency"], f"{row['events']:,}")
    out.print(table)


@sources_app.command("rules")
@edge
def sources_rules(
    name: Annotated[str, typer.Argument(help="The source.")],
    file: Annotated[Path | None, typer.Option(help="A JSON file of channel-rule overrides (docs/channels.md).")] = None,
    reset: Annotated[bool, typer.Option(help="Go back to the default rules.")] = False,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Show or set a source's channel-rule overrides (applies to events stored from now on)."""
    from masar.errors import InvalidInput

    store = _open(data_dir, store_url)
    source = store.source(name)
    if file is not None or reset:
        rules = None
        if file is not None:
            try:
                rules = orjson.loads(file.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{file} is not valid JSON: {exc}") from None
        source = store.set_channel_rules(source, rules)
    if json:
        _print_json(source.channel_rules or {})
    else:
        out.print(orjson.dumps(source.channel_rules or {}, option=orjson.OPT_INDENT_2).decode())


@keys_app.command("create")
@edge
def keys_create(
    source: Annotated[str | None, typer.Option("--source", help="Limit the key to one source.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Create a secret key for the read/query API (shown once)."""
    store = _open(data_dir, store_url)
    key, secret = store.create_api_key(source=source, name=name)
    if json:
        _print_json({"id": key.id, "name": key.name, "source": source, "key": secret})
    else:
        out.print(f"Secret key (shown once): [bold]{secret}[/bold]", highlight=False)


@keys_app.command("list")
@edge
def keys_list(data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """List secret keys: id, name, prefix, source, created, revoked (the secrets are not kept)."""
    store = _open(data_dir, store_url)
    names = {s.id: s.name for s in store.sources()}
    rows = [
        {"id": k.id, "name": k.name, "prefix": k.prefix, "source": names.get(k.source_id) if k.source_id else None,
         "created_at": k.created_at, "revoked_at": k.revoked_at}
        for k in store.api_keys()
    ]  # fmt: skip
    if json:
        _print_json(rows)
        return
    table = Table("id", "name", "prefix", "source", "created", "revoked")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["prefix"] + "…", row["source"] or "(all)",
                      str(row["created_at"])[:19], str(row["revoked_at"] or "")[:19])  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
@edge
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (masar keys list).")],
                data_dir: DataDir = None, store_url: StoreOpt = None) -> None:  # fmt: skip
    """Revoke a secret key: it stops working at once."""
    key = _open(data_dir, store_url).revoke_api_key(key_id)
    out.print(f"Revoked key {key.id} ({escape(key.name)}, {key.prefix}…).", highlight=False)


# -- events -------------------------------------------------------------------------------------


@events_app.command("count")
@edge
def events_count(
    source: SourceName,
    event: Annotated[str | None, typer.Option(help="Only this event name.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """How many events are stored."""
    store = _open(data_dir, store_url)
    count = store.count_events(store.source(source), event=event)
    if json:
        _print_json({"count": count})
    else:
        out.print(f"{count:,}")


@events_app.command("tail")
@edge
def events_tail(
    source: SourceName,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """The newest stored events."""
    store = _open(data_dir, store_url)
    rows = store.tail(store.source(source), limit=limit)
    if json:
        _print_json(rows)
        return
    table = Table("time", "event", "person", "session", "channel", "device")
    for row in rows:
        table.add_row(str(row["ts"]), row["event"], str(row["person_id"]), row["session_id"] or "",
                      row["channel"] or "", row["device_type"] or "")  # fmt: skip
    out.print(table)


@events_app.command("rejected")
@edge
def events_rejected(
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Quarantined messages with the reason they were refused."""
    store = _open(data_dir, store_url)
    rows = store.rejected(store.source(source) if source else None, limit=limit)
    if json:
        _print_json(rows)
        return
    table = Table("received", "origin", "code", "reason")
    for row in rows:
        table.add_row(str(row["received_at"]), row["origin"], row["code"], row["message"])
    out.print(table)


# -- import -------------------------------------------------------------------------------------


@app.command("import")
@edge
def import_file(
    file: Annotated[Path, typer.Argument(help="A CSV, JSON Lines or Parquet file.")],
    source: SourceName,
    preset: Annotated[str, typer.Option(help="events, segment or orders.")] = "events",
    map_: Annotated[str | None, typer.Option("--map", help="field=column,... for other layouts.")] = None,
    format_: Annotated[str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from the name).")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows (default: FILE.rejects.csv).")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Load history from a file; re-importing the same file adds nothing."""
    from masar.importers import import_path

    store = _open(data_dir, store_url)
    report = import_path(
        store, store.source(source), file, preset=preset, mapping=map_, file_format=format_,
        rejects_path=rejects, progress=not json,
    )  # fmt: skip
    if json:
        _print_json(report.to_dict())
    else:
        out.print(
            f"Imported {report.imported:,} events ({report.skipped_existing:,} already stored, "
            f"{report.rejected:,} rejected) in {report.seconds:.1f} s — {report.rate:,.0f} rows/s."
        )
        if report.rejected:
            out.print(f"Rejected rows and reasons: {report.rejects_path}")


# -- analyses -----------------------------------------------------------------------------------


def _read_query_file(path: Path) -> dict[str, Any]:
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{path} is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold one query object", code="invalid_query")
    return data


def _build_query(kind: str, query_file: Path | None, given: dict[str, Any],
                 defaults: dict[str, tuple[Any, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """A query from an optional JSON file and the command's options. ``given`` options (None or
    empty when not given) override the file; ``defaults`` options ``{field: (value, default)}``
    override it only when changed from their default, and fill a query without a file."""
    query = _read_query_file(query_file) if query_file is not None else {}
    query["kind"] = kind
    query.update({k: v for k, v in given.items() if v is not None and v != []})
    for key, (value, default) in (defaults or {}).items():
        if query_file is None or value != default:
            query[key] = value
    if "source" not in query:
        raise InvalidInput("name the source with --source", code="invalid_query")
    return query


def _require_steps(query: dict[str, Any]) -> None:
    if "steps" not in query and "template" not in query:
        raise InvalidInput("give the steps (--step EVENT, at least twice) or --template", code="invalid_query")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _steps_table(title: str | None, steps: list[dict[str, Any]]) -> Table:
    table = Table("step", "count", "from start", "from previous", "drop-off", "median time", title=title)
    for row in steps:
        table.add_row(f"{row['step']}. {row['name']}", f"{row['count']:,}", _pct(row["conversion_from_start"]),
                      _pct(row["conversion_from_previous"]), f"{row['drop_off']:,}",
                      _duration(row["median_seconds_from_previous"]))  # fmt: skip
    return table


@app.command("funnel")
@edge
def funnel(
    source: Annotated[str | None, typer.Option("--source", help="The source (store) name.")] = None,
    step: Annotated[list[str] | None, typer.Option("--step", help="An event name; repeat for each step (2 to 30).")] = None,
    template: Annotated[str | None, typer.Option(help="Start from a template: store, aida, marketing, subscription.")] = None,
    window: Annotated[str, typer.Option(help="Conversion window from step 1: 7d, 2h, 30m, 3600s.")] = "7d",
    order: Annotated[str, typer.Option(help="ordered, strict or unordered.")] = "ordered",
    counting: Annotated[str, typer.Option(help="uniques (people), sessions or totals (attempts).")] = "uniques",
    breakdown: Annotated[str | None, typer.Option(help="Split by a property (device_type, person.country, ...).")] = None,
    attribution: Annotated[str, typer.Option(help="Breakdown value from: first_touch, last_touch, all_events, step.")] = "first_touch",
    attribution_step: Annotated[int | None, typer.Option(help="The step, with --attribution step.")] = None,
    limit: Annotated[int, typer.Option(help="Breakdown values shown before Other.")] = 10,
    hold_constant: Annotated[list[str] | None, typer.Option("--hold-constant", help="A property every step must share.")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, the store's time zone).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    trend: Annotated[str | None, typer.Option(help="Conversion by entry day, week or month.")] = None,
    query_file: Annotated[Path | None, typer.Option("--query", help="A JSON query file (- for stdin); options override it.")] = None,
    people: Annotated[int | None, typer.Option(help="List the people who reached this step (1-based).")] = None,
    dropped: Annotated[bool, typer.Option(help="With --people: those who dropped out at that step instead.")] = False,
    export: Annotated[Path | None, typer.Option(help="With --people: write all of them to this CSV file.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """How many people go through a sequence of steps, and where they drop out."""
    by = None
    if breakdown is not None:
        by = {"property": breakdown, "attribution": attribution, "limit": limit,
              **({"step": attribution_step} if attribution_step is not None else {})}  # fmt: skip
    given = {"source": source, "template": template, "breakdown": by, "date_from": date_from, "date_to": date_to,
             "trend": trend, "steps": step, "hold_constant": hold_constant}  # fmt: skip
    defaults = {"window": (window, "7d"), "order": (order, "ordered"), "counting": (counting, "uniques")}
    query = _build_query("funnel", query_file, given, defaults)
    _require_steps(query)
    store = _open(data_dir, store_url)
    if people is not None:
        query.update(kind="funnel_people", step=people, status="dropped" if dropped else "reached",
                     limit=100_000 if export is not None else 100)  # fmt: skip
        result = store.run(query).to_dict()
        if export is not None:
            _write_people_csv(export, result["people"])
        if json:
            _print_json(result)
        else:
            what = "dropped out at" if dropped else "reached"
            out.print(f"{result['total']:,} people {what} step {people}.")
            if export is not None:
                out.print(f"Wrote {len(result['people']):,} to {export}.")
            else:
                table = Table("person", "user id", "deepest step", "last step at")
                for person in result["people"]:
                    table.add_row(str(person["person_id"]), person["user_id"] or "", str(person["deepest_step"]),
                                  person["last_step_at"])  # fmt: skip
                out.print(table)
        return
    result = store.run(query).to_dict()
    if json:
        _print_json(result)
        return
    out.print(_steps_table(f"{result['source']}: {result['order']} funnel, {result['counting']}", result["steps"]))
    for row in result["breakdown"]:
        label = "Other" if row["value"] == "$other" else ("(none)" if row["value"] is None else str(row["value"]))
        out.print(_steps_table(f"{result['breakdown_property']} = {label}", row["steps"]))
    for row in result["trend"]:
        out.print(f"{row['period']}: {row['entered']:,} entered, {row['converted']:,} converted ({_pct(row['conversion'])})")


def _write_people_csv(path: Path, people: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["person_id", "user_id", "anonymous_ids", "deepest_step", "last_step_at"])
        for p in people:
            writer.writerow([p["person_id"], p["user_id"] or "", " ".join(p["anonymous_ids"]), p["deepest_step"],
                             p["last_step_at"]])  # fmt: skip


@app.command("leaks")
@edge
def leaks(
    source: Annotated[str | None, typer.Option("--source", help="The source (store) name.")] = None,
    step: Annotated[list[str] | None, typer.Option("--step", help="An event name; repeat for each step (2 to 30).")] = None,
    template: Annotated[str | None, typer.Option(help="Start from a template: store, aida, marketing, subscription.")] = None,
    window: Annotated[str, typer.Option(help="Conversion window from step 1: 7d, 2h, 30m, 3600s.")] = "7d",
    counting: Annotated[str, typer.Option(help="sessions (default), uniques (people) or totals (attempts).")] = "sessions",
    segment_by: Annotated[list[str] | None, typer.Option("--segment-by", help="Also test this property's values (repeatable).")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, the store's time zone).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    min_sample: Annotated[int | None, typer.Option(help="Fewest units a segment or period needs to be tested (50).")] = None,
    alpha: Annotated[float | None, typer.Option(help="Significance after the correction over all tests (0.05).")] = None,
    min_effect: Annotated[float | None, typer.Option(help="Smallest relative drop reported: 0.3 = 30% below baseline.")] = None,
    query_file: Annotated[Path | None, typer.Option("--query", help="A JSON query file (- for stdin); options override it.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Where, for whom and since when a funnel's conversion fell, and what it cost (docs/leaks.md)."""
    given = {"source": source, "template": template, "date_from": date_from, "date_to": date_to,
             "min_sample": min_sample, "alpha": alpha, "min_effect": min_effect, "steps": step,
             "segment_by": segment_by}  # fmt: skip
    query = _build_query("leaks", query_file, given, {"window": (window, "7d"), "counting": (counting, "sessions")})
    _require_steps(query)
    result = _open(data_dir, store_url).run(query).to_dict()
    if json:
        _print_json(result)
        return
    findings = result["findings"]
    out.print(f"{result['source']}: {len(findings)} leak{'s' if len(findings) != 1 else ''} found "
              f"({result['tests']:,} tests, {result['counting']})", highlight=False)  # fmt: skip
    if not findings:
        return
    money = result["currency"] or ""
    table = Table("#", "step", "segment", "period", "conversion", "baseline", "lost", f"lost {money}".strip(), "p")
    for n, f in enumerate(findings, 1):
        seg = f["segment"]
        period = f["period"]
        table.add_row(
            str(n), f"{f['step_from']} → {f['step_to']}",
            "everyone" if seg is None else f"{seg['property']} = {seg['value']}",
            "whole range" if period is None else f"{period['start']} – {period['end']}",
            _pct(f["conversion"]), _pct(f["baseline_conversion"]), f"{f['lost_conversions']:,.0f}",
            "–" if f["lost_revenue"] is None else f"{f['lost_revenue']:,.0f}", f"{f['p_value']:.2g}",
        )  # fmt: skip
    out.print(table)
    for n, f in enumerate(findings, 1):
        out.print(f"{n}. {f['summary']}", highlight=False)


def _cleaning_rule(text: str) -> dict[str, str]:
    pattern, sep, alias = text.rpartition("=>")
    if not sep or not pattern or not alias.strip():
        raise InvalidInput(f"--clean takes REGEX=>ALIAS, not {text!r}", code="invalid_query")
    return {"pattern": pattern, "alias": alias.strip()}


@app.command("paths")
@edge
def paths(
    source: Annotated[str | None, typer.Option("--source", help="The source (store) name.")] = None,
    after: Annotated[str | None, typer.Option(help="Paths after this event (the anchor).")] = None,
    before: Annotated[str | None, typer.Option(help="Paths before this event (the anchor).")] = None,
    step: Annotated[list[str] | None, typer.Option("--step", help="A funnel step, with --dropped-after (repeat).")] = None,
    dropped_after: Annotated[int | None, typer.Option(help="Follow who reached this funnel step (1-based) and not the next.")] = None,
    funnel_window: Annotated[str, typer.Option(help="With --step: the funnel's conversion window.")] = "7d",
    window: Annotated[str, typer.Option(help="How far from the anchor: 1d, 2h, 30m, or session.")] = "1d",
    length: Annotated[int, typer.Option(help="Events in a path, the anchor included (2 to 20).")] = 5,
    every: Annotated[bool, typer.Option(help="A path from every anchor occurrence, not each person's first.")] = False,
    label: Annotated[str, typer.Option(help="Label events by: event, path or url (page events).")] = "event",
    clean: Annotated[list[str] | None, typer.Option(help="A cleaning rule REGEX=>ALIAS (repeatable, first match wins).")] = None,
    collapse: Annotated[bool, typer.Option("--collapse/--no-collapse", help="Merge immediate repeats.")] = True,
    exclude: Annotated[list[str] | None, typer.Option(help="An event to leave out of paths (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="Top paths and loops listed.")] = 20,
    nodes: Annotated[int, typer.Option(help="Sankey nodes kept; the rest fold into $other.")] = 30,
    edges: Annotated[int, typer.Option(help="Sankey edges listed.")] = 100,
    date_from: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, the store's time zone).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    query_file: Annotated[Path | None, typer.Option("--query", help="A JSON query file (- for stdin); options override it.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """What people did after (or before) an event, or after dropping out of a funnel step."""
    if after is not None and before is not None:
        raise InvalidInput("give --after or --before, not both", code="invalid_query")
    anchor: dict[str, Any] = {}
    if after is not None or before is not None:
        anchor = {"step": after or before, "direction": "after" if after is not None else "before"}
    if step or dropped_after is not None:
        if not step or dropped_after is None:
            raise InvalidInput("follow drop-outs with --step (twice or more) and --dropped-after N", code="invalid_query")
        anchor["funnel"] = {"steps": step, "dropped_after": dropped_after, "window": funnel_window}
    given = {"source": source, "date_from": date_from, "date_to": date_to, **anchor,
             "cleaning": [_cleaning_rule(rule) for rule in clean or []], "exclude_events": exclude}  # fmt: skip
    defaults = {"window": (window, "1d"), "length": (length, 5), "label": (label, "event"), "limit": (limit, 20),
                "node_limit": (nodes, 30), "edge_limit": (edges, 100), "collapse_repeats": (collapse, True),
                "occurrence": ("every" if every else "first", "first")}  # fmt: skip
    query = _build_query("paths", query_file, given, defaults)
    result = _open(data_dir, store_url).run(query).to_dict()
    if json:
        _print_json(result)
        return
    where = f"{result['direction']} {result['anchor']}" if result["anchor"] else "from each person's first event"
    if result["funnel"]:
        f = result["funnel"]
        out.print(f"{f['dropped']:,} of {f['entered']:,} people reached {f['step']} and not the next step.")
    table = Table("path", "count", "share", title=f"{result['source']}: paths {where} ({result['total']:,} paths)")
    for row in result["paths"]:
        table.add_row(" → ".join(row["events"]), f"{row['count']:,}", _pct(row["share"]))
    if result["other_paths"]["count"]:
        rest = result["other_paths"]
        table.add_row(f"({rest['paths']:,} other paths)", f"{rest['count']:,}", _pct(rest["count"] / result["total"]))
    out.print(table)
    loops = result["loops"]
    if loops["paths"]:
        out.print(f"{loops['paths']:,} paths ({_pct(loops['share'])}) loop back to an earlier event:")
        for row in loops["top"]:
            out.print(f"  {' → '.join(row['events'])}: {row['count']:,}", highlight=False)


@app.command("correlation")
@edge
def correlation(
    source: Annotated[str | None, typer.Option("--source", help="The source (store) name.")] = None,
    step: Annotated[list[str] | None, typer.Option("--step", help="An event name; repeat for each step (2 to 30).")] = None,
    template: Annotated[str | None, typer.Option(help="Start from a template: store, aida, marketing, subscription.")] = None,
    window: Annotated[str, typer.Option(help="Conversion window from step 1: 7d, 2h, 30m, 3600s.")] = "7d",
    order: Annotated[str, typer.Option(help="ordered or strict.")] = "ordered",
    property_: Annotated[list[str] | None, typer.Option("--property", help="Also correlate this property's values (repeatable).")] = None,
    no_events: Annotated[bool, typer.Option("--no-events", help="Only properties, not event names.")] = False,
    include_steps: Annotated[bool, typer.Option(help="Keep the funnel's own step events as candidates.")] = False,
    exclude: Annotated[list[str] | None, typer.Option(help="An event to leave out (repeatable).")] = None,
    min_people: Annotated[int, typer.Option(help="Least people (converted or not) a candidate needs.")] = 25,
    limit: Annotated[int, typer.Option(help="Rows in each list.")] = 10,
    date_from: Annotated[str | None, typer.Option("--from", help="First day of entry (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    query_file: Annotated[Path | None, typer.Option("--query", help="A JSON query file (- for stdin); options override it.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Which events and properties go with converting through a funnel, and which with dropping out."""
    given = {"source": source, "template": template, "date_from": date_from, "date_to": date_to,
             "properties": property_, "exclude_events": exclude, "steps": step}  # fmt: skip
    defaults = {"window": (window, "7d"), "order": (order, "ordered"), "events": (not no_events, True),
                "exclude_steps": (not include_steps, True), "min_people": (min_people, 25), "limit": (limit, 10)}  # fmt: skip
    query = _build_query("correlation", query_file, given, defaults)
    _require_steps(query)
    result = _open(data_dir, store_url).run(query).to_dict()
    if json:
        _print_json(result)
        return
    out.print(f"{result['source']}: {result['people']:,} people entered, {result['converted']:,} converted, "
              f"{result['dropped']:,} did not.", highlight=False)  # fmt: skip
    if result["skewed"]:
        out.print("[yellow]Converters and the others differ more than 10×: odds ratios are less reliable.[/yellow]")
    for title, rows in (("Goes with converting", result["success"]), ("Goes with dropping out", result["failure"])):
        table = Table("event or property", "converted", "dropped", "odds ratio", "95% interval", "p (adjusted)",
                      title=title)  # fmt: skip
        for row in rows:
            name = row["event"] if row["type"] == "event" else f"{row['property']} = {row['value']}"
            low, high = row["confidence_interval"]
            mark = "" if row["significant"] else " (n.s.)"
            table.add_row(name, f"{row['success_count']:,}", f"{row['failure_count']:,}", f"{row['odds_ratio']:.2f}",
                          f"{low:.2f}–{high:.2f}", f"{row['adjusted_p_value']:.3g}{mark}")  # fmt: skip
        out.print(table)


@templates_app.command("list")
@edge
def templates_list(source: SourceName, data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """The funnel templates and their stages, as this source defines them."""
    from masar.engine.templates import templates

    store = _open(data_dir, store_url)
    found = templates(store, store.source(source))
    if json:
        _print_json(found)
        return
    for item in found:
        names = " → ".join(s.get("name") or s.get("event") or "?" for s in item["steps"])
        mark = " (customized)" if item["customized"] else ""
        out.print(f"[bold]{item['name']}[/bold]{mark}: {item['title']}\n  {names}", highlight=False)


@templates_app.command("set")
@edge
def templates_set(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    file: Annotated[Path, typer.Argument(help="A JSON file with the list of steps (- for stdin).")],
    source: SourceName,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
) -> None:
    """Define a template's stages for a source (its events, filters, groups)."""
    raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    try:
        steps = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{file} is not valid JSON", code="invalid_json") from None
    store = _open(data_dir, store_url)
    store.set_funnel_template(store.source(source), name, steps)
    out.print(f"Template {name!r} saved for {source!r}.")


@templates_app.command("reset")
@edge
def templates_reset(
    name: Annotated[str, typer.Argument(help="The template's name.")], source: SourceName, data_dir: DataDir = None, store_url: StoreOpt = None) -> None:
    """Go back to the built-in definition of a template."""
    store = _open(data_dir, store_url)
    store.set_funnel_template(store.source(source), name, None)
    out.print(f"Template {name!r} is the built-in one again for {source!r}.")


# -- serve and demo -----------------------------------------------------------------------------


@app.command("serve")
@edge
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
) -> None:
    """Run the capture API and the web app."""
    import uvicorn

    from masar.api.app import create_app
    from masar.config import tune_gc_for_service
    from masar.store.url import parse_store_url

    settings = _settings(data_dir, store_url)
    where = parse_store_url(settings.store)
    shown = settings.resolved_data_dir() if where.kind == "embedded" else where.redacted()
    err.print(f"Masar serving {shown} on http://{host}:{port}", highlight=False)
    application = create_app(settings)
    tune_gc_for_service()
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@app.command("demo")
@edge
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the server afterwards.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed builds the same store.")] = 7,
    visitors: Annotated[int, typer.Option(help="How many visitors.")] = 50_000,
    days: Annotated[int, typer.Option(help="How many days of history, ending today.")] = 90,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Build the demo store (unless it exists) and serve it."""
    from masar.demo.load import DEMO_SOURCE, load_demo

    store = _open(data_dir, store_url)
    report = load_demo(store, seed=seed, visitors=visitors, days=days, progress=not json)
    if json:
        _print_json(report)
    elif report.get("skipped"):
        out.print(f"The demo store {DEMO_SOURCE!r} already exists ({report['events']:,} events).")
    else:
        out.print(f"Built {DEMO_SOURCE!r}: {report['events']:,} events in {report['seconds']:.1f} s.")
    store.close()
    if serve_after:
        serve(host=host, port=port, data_dir=data_dir, store_url=store_url)


def main() -> None:
    # Under ``python -m masar.cli`` this module is ``__main__``; the sales and audience commands
    # register on the ``masar.cli`` module's app, so run that one.
    from masar import cli_audiences, cli_sales, cli_store  # noqa: F401 - they register on the app they share

    cli_sales.app()


if __name__ == "__main__":
    main()

# Sales and audience commands register themselves on the same app.
import masar.cli_audiences  # noqa: E402, F401
import masar.cli_sales  # noqa: E402, F401
import masar.cli_store  # noqa: E402, F401
import masar.cli_web  # noqa: E402, F401
