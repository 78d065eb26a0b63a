"""``masar store``: create the ClickHouse schema, and copy an embedded store into ClickHouse.

Registered on the same Typer app as ``masar.cli`` (imported at its end).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from masar.cli import DataDir, Json, StoreOpt, _print_json, _settings, app, edge, out

store_app = typer.Typer(help="The event store: ClickHouse schema and migration.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("init")
@edge
def store_init(
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    print_ddl: Annotated[bool, typer.Option("--print", help="Print the statements instead of running them.")] = False,
    json: Json = False,
) -> None:
    """Create Masar's database and tables in ClickHouse (safe to run again)."""
    from masar.store.clickhouse.schema import ddl
    from masar.store.open import open_store
    from masar.store.url import parse_store_url

    settings = _settings(data_dir, store_url)
    url = parse_store_url(settings.store)
    if url.kind == "embedded":
        out.print("The embedded store needs no schema: it is created when first opened.")
        return
    if print_ddl:
        out.print(";\n\n".join(ddl(url.database, url.cluster)) + ";", highlight=False)
        return
    store = open_store(settings)
    try:
        statements = store.init_schema()
    finally:
        store.close()
    if json:
        _print_json({"store": url.redacted(), "statements": len(statements)})
    else:
        out.print(f"Schema ready in {url.redacted()} ({len(statements)} statements).")


@store_app.command("migrate")
@edge
def store_migrate(
    to: Annotated[str, typer.Option("--to", help="The ClickHouse store to copy into (chdb://DIR or clickhouse://…).")],
    data_dir: DataDir = None,
    json: Json = False,
) -> None:
    """Copy the embedded store in the data directory into ClickHouse, with progress; run it again
    to resume after an interruption."""
    from masar.store.clickhouse.migrate import migrate
    from masar.store.embedded.store import EmbeddedStore
    from masar.store.open import open_store
    from masar.store.url import parse_store_url

    url = parse_store_url(to)
    if url.kind == "embedded":
        raise typer.BadParameter("--to takes a ClickHouse store: chdb://DIR or clickhouse://user:pw@host:8123/db")
    embedded = EmbeddedStore(_settings(data_dir))
    target = open_store(_settings(data_dir, to))
    try:
        with Progress(TextColumn("copying events"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), disable=json, transient=False) as bar:  # fmt: skip
            task = bar.add_task("copy", total=None)
            report = migrate(embedded, target, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        target.close()
        embedded.close()
    if json:
        _print_json({"to": url.redacted(), **report.to_dict()})
    else:
        out.print(
            f"Copied {report.rows_copied:,} events in {report.segments_copied} segments to {url.redacted()}"
            f" ({report.segments_skipped} already there)" + ("; catalog copied." if report.catalog_copied else ".")
        )
