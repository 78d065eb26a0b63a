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
from rich.table import Table

from masar.errors import MasarError

app = typer.Typer(help="Masar: sales-funnel analytics for online stores.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
sources_app = typer.Typer(help="Sources: the online stores that send events.", no_args_is_help=True)
keys_app = typer.Typer(help="Secret keys for the query API.", no_args_is_help=True)
events_app = typer.Typer(help="Look at stored events.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The data directory (default: $MASAR_DATA_DIR, else ./masar-data).",
                 show_default=False),  # fmt: skip
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SourceName = Annotated[str, typer.Option("--source", help="The source (store) name.")]


def _settings(data_dir: Path | None, **extra: Any):
    from masar.config import Settings

    return Settings(**({"data_dir": data_dir} if data_dir is not None else {}), **extra)


def _open(data_dir: Path | None):
    from masar.store.embedded.store import EmbeddedStore

    return EmbeddedStore(_settings(data_dir))


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def edge(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User mistakes become one sentence on stderr and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MasarError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
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
    json: Json = False,
) -> None:
    """Create a source and print its write key."""
    store = _open(data_dir)
    source = store.create_source(name, currency=currency, timezone=timezone, own_domains=tuple(domain or ()))
    if json:
        _print_json({"id": source.id, "name": source.name, "write_key": source.write_key})
    else:
        out.print(f"Created source [bold]{source.name}[/bold] (id {source.id}).")
        out.print(f"Write key: [bold]{source.write_key}[/bold]", highlight=False)


@sources_app.command("list")
@edge
def sources_list(data_dir: DataDir = None, json: Json = False) -> None:
    """List sources with their write keys and event counts."""
    store = _open(data_dir)
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
    json: Json = False,
) -> None:
    """Show or set a source's channel-rule overrides (applies to events stored from now on)."""
    from masar.errors import InvalidInput

    store = _open(data_dir)
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
    json: Json = False,
) -> None:
    """Create a secret key for the read/query API (shown once)."""
    store = _open(data_dir)
    key, secret = store.create_api_key(source=source, name=name)
    if json:
        _print_json({"id": key.id, "name": key.name, "source": source, "key": secret})
    else:
        out.print(f"Secret key (shown once): [bold]{secret}[/bold]", highlight=False)


# -- events -------------------------------------------------------------------------------------


@events_app.command("count")
@edge
def events_count(
    source: SourceName,
    event: Annotated[str | None, typer.Option(help="Only this event name.")] = None,
    data_dir: DataDir = None,
    json: Json = False,
) -> None:
    """How many events are stored."""
    store = _open(data_dir)
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
    json: Json = False,
) -> None:
    """The newest stored events."""
    store = _open(data_dir)
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
    json: Json = False,
) -> None:
    """Quarantined messages with the reason they were refused."""
    store = _open(data_dir)
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
    json: Json = False,
) -> None:
    """Load history from a file; re-importing the same file adds nothing."""
    from masar.importers import import_path

    store = _open(data_dir)
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


# -- serve and demo -----------------------------------------------------------------------------


@app.command("serve")
@edge
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the capture API and the web app."""
    import uvicorn

    from masar.api.app import create_app

    settings = _settings(data_dir)
    err.print(f"Masar serving {settings.resolved_data_dir()} on http://{host}:{port}", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


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
    json: Json = False,
) -> None:
    """Build the demo store (unless it exists) and serve it."""
    from masar.demo.load import DEMO_SOURCE, load_demo

    store = _open(data_dir)
    report = load_demo(store, seed=seed, visitors=visitors, days=days, progress=not json)
    if json:
        _print_json(report)
    elif report.get("skipped"):
        out.print(f"The demo store {DEMO_SOURCE!r} already exists ({report['events']:,} events).")
    else:
        out.print(f"Built {DEMO_SOURCE!r}: {report['events']:,} events in {report['seconds']:.1f} s.")
    store.close()
    if serve_after:
        serve(host=host, port=port, data_dir=data_dir)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
