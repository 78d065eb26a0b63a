"""Audience and customer commands of the CLI: save, list, show, delete and list the members of
audiences (docs/audiences.md), and one customer's profile.

Registered on the same Typer app as ``masar.cli`` (which imports this module at its end); the
same thin layer: every figure comes from a query run through the store (``audience``,
``customer``), the very JSON ``POST /api/v1/query`` answers.
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from masar.cli import DataDir, Json, SourceName, StoreOpt, _open, _print_json, app, edge, out
from masar.errors import InvalidInput

audiences_app = typer.Typer(help="Saved audiences: people picked by what they did, bought and are.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(audiences_app, name="audiences")

AudienceName = Annotated[str, typer.Argument(help="The audience's name (1 to 200 characters, any script).")]
AsOf = Annotated[
    str | None, typer.Option("--as-of", help="The day to evaluate as of (default: the data's last day).")
]


def _count(store: Any, source: str, name: str, as_of: str | None = None) -> dict[str, Any]:
    return store.run({"kind": "audience", "source": source, "name": name, "as_of": as_of, "limit": 0}).to_dict()


def _read_json(text: bytes, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def _definition(example: str | None, values: list[str], file: Path | None, definition: str | None) -> dict[str, Any]:
    given = [flag for flag, value in (("--example", example), ("--file", file), ("--definition", definition))
             if value is not None]  # fmt: skip
    if len(given) != 1:
        raise InvalidInput("give the audience as one of --example KEY, --file FILE.json or --definition JSON")
    if values and example is None:
        raise InvalidInput("--set goes with --example (the example's parameters)")
    if example is not None:
        from masar.engine.audience_examples import example_definition

        params = {}
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"--set {item!r}: use NAME=VALUE (days=14, bought=Shoes,Bags)")
            params[key.strip()] = value
        return example_definition(example, **params)
    if file is not None:
        return _read_json(sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes(), str(file))
    return _read_json(definition.encode(), "--definition")


@audiences_app.command("examples")
@edge
def audiences_examples(json: Json = False) -> None:
    """The built-in examples: save one with `masar audiences save NAME --example KEY`."""
    from masar.engine.audience_examples import EXAMPLES

    rows = [e.to_dict() for e in EXAMPLES.values()]
    if json:
        _print_json(rows)
        return
    table = Table("example", "selects", "parameters (--set NAME=VALUE)")
    for row in rows:
        params = ", ".join(f"{p['name']}={p['default'] if p['default'] is not None else '…'}" for p in row["params"])
        table.add_row(row["key"], row["title"], params)
    out.print(table)


@audiences_app.command("save")
@edge
def audiences_save(
    name: AudienceName,
    source: SourceName,
    example: Annotated[str | None, typer.Option(help="A built-in example (masar audiences examples).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="An example's parameter, NAME=VALUE (repeatable).")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="A JSON file holding the definition (- for stdin).")] = None,
    definition: Annotated[str | None, typer.Option(help="The definition as JSON text.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Save an audience under a name (replacing one of the same name) and count its members."""
    parsed = _definition(example, set_ or [], file, definition)
    store = _open(data_dir, store_url)
    try:
        saved = store.save_audience(store.source(source), name, parsed)
        counted = _count(store, source, saved.name)
    finally:
        store.close()
    if json:
        _print_json({**saved.to_dict(), "count": counted["count"], "as_of": counted["as_of"]})
        return
    out.print(f"Saved audience [bold]{escape(saved.name)}[/bold]: {counted['count']:,} members as of "
              f"{counted['as_of']}.")  # fmt: skip


@audiences_app.command("list")
@edge
def audiences_list(source: SourceName, as_of: AsOf = None, data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """The saved audiences with their member counts."""
    store = _open(data_dir, store_url)
    try:
        rows = []
        for saved in store.audiences(store.source(source)):
            counted = _count(store, source, saved.name, as_of)
            rows.append({**saved.to_dict(), "count": counted["count"], "as_of": counted["as_of"]})
    finally:
        store.close()
    if json:
        _print_json(rows)
        return
    if not rows:
        out.print(f"No saved audiences for {source!r}: `masar audiences examples` has some to start from.")
        return
    table = Table("audience", "members", "as of", "saved", title=f"{source}: audiences")
    for row in rows:
        table.add_row(escape(row["name"]), f"{row['count']:,}", row["as_of"], row["updated_at"][:16].replace("T", " "))
    out.print(table)


@audiences_app.command("show")
@edge
def audiences_show(
    name: AudienceName, source: SourceName, as_of: AsOf = None, data_dir: DataDir = None,
    store_url: StoreOpt = None, json: Json = False
) -> None:
    """A saved audience's definition and member count."""
    store = _open(data_dir, store_url)
    try:
        saved = store.audience(store.source(source), name)
        counted = _count(store, source, saved.name, as_of)
    finally:
        store.close()
    result = {**saved.to_dict(), "count": counted["count"], "as_of": counted["as_of"]}
    if json:
        _print_json(result)
        return
    out.print(f"[bold]{escape(saved.name)}[/bold]: {counted['count']:,} members as of {counted['as_of']} "
              f"(saved {result['updated_at'][:16].replace('T', ' ')})")  # fmt: skip
    out.print(orjson.dumps(saved.definition, option=orjson.OPT_INDENT_2).decode(), highlight=False)


@audiences_app.command("delete")
@edge
def audiences_delete(name: AudienceName, source: SourceName, data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """Delete a saved audience."""
    store = _open(data_dir, store_url)
    try:
        store.delete_audience(store.source(source), name)
    finally:
        store.close()
    if json:
        _print_json({"deleted": name.strip()})
    else:
        out.print(f"Deleted audience {name.strip()!r}.")


@audiences_app.command("members")
@edge
def audiences_members(
    name: AudienceName,
    source: SourceName,
    as_of: AsOf = None,
    limit: Annotated[int, typer.Option(help="Members listed (all of them with --export).")] = 50,
    offset: Annotated[int, typer.Option(help="Members skipped first (by person id).")] = 0,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write every member to FILE.csv or FILE.xlsx.")
    ] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """The members of a saved audience: who they are, their orders, revenue and last visit."""
    query = {"kind": "audience", "source": source, "name": name, "as_of": as_of,
             "limit": None if export is not None else limit, "offset": offset}  # fmt: skip
    store = _open(data_dir, store_url)
    try:
        result = store.run(query)
        if export is not None:
            from masar.exports import write_table

            write_table(result.table(), export)
        shown = result.to_dict()
    finally:
        store.close()
    if json:
        _print_json(shown)
        return
    if export is not None:
        out.print(f"Wrote {len(shown['members']):,} members of {shown['name']!r} to {export}.", highlight=False,
                  markup=False)  # fmt: skip
        return
    table = Table("person", "user id", "email", "orders", "revenue", "last order", "last seen",
                  title=f"{escape(shown['name'])}: {shown['count']:,} members as of {shown['as_of']}")  # fmt: skip
    for m in shown["members"]:
        table.add_row(str(m["person"]), _text(m["user_id"]), _text(m["email"]), f"{m['orders']:,}",
                      f"{Decimal(m['revenue']):,}", _when(m["last_order_ts"]), _when(m["last_seen"]))  # fmt: skip
    out.print(table)
    if shown["count"] > offset + len(shown["members"]):
        out.print(f"… {shown['count'] - offset - len(shown['members']):,} more (--offset, --limit, --export).")


@app.command("customer")
@edge
def customer(
    person: Annotated[str, typer.Argument(help="A person id, user id, email or anonymous id.")],
    source: SourceName,
    by: Annotated[
        str | None, typer.Option(help="Read PERSON as: person, user_id, email or anonymous_id (default: any).")
    ] = None,
    as_of: AsOf = None,
    timeline: Annotated[int, typer.Option(help="The latest events shown.")] = 20,
    no_predict: Annotated[
        bool, typer.Option("--no-predict", help="Skip the predicted value (it fits the store's models).")
    ] = False,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """One customer: identity, traits, orders and lifetime value, RFM segment, audiences, timeline."""
    query = {"kind": "customer", "source": source, "person": person, "by": by, "as_of": as_of,
             "timeline_limit": timeline, "predict": not no_predict}  # fmt: skip
    store = _open(data_dir, store_url)
    try:
        currency = store.source(source).currency
        result = store.run(query).to_dict()
    finally:
        store.close()
    if json:
        _print_json(result)
        return
    _print_customer(result, currency)


def _print_customer(c: dict[str, Any], currency: str) -> None:
    ids = c["identity"]
    out.print(f"[bold]Person {c['person']}[/bold] · user id {_text(ids['user_id'])} · email {_text(ids['email'])}",
              highlight=False)  # fmt: skip
    if ids["anonymous_ids"]:
        out.print(f"anonymous ids: {escape(', '.join(ids['anonymous_ids']))}", highlight=False)
    campaign = f" ({escape(c['first_campaign'])})" if c["first_campaign"] else ""
    out.print(f"first seen {_when(c['first_seen'])} via {_text(c['first_channel'])}{campaign}; "
              f"last seen {_when(c['last_seen'])}; as of {c['as_of']}", highlight=False)  # fmt: skip
    if c["traits"]:
        out.print("traits: " + escape(", ".join(f"{k}={v}" for k, v in c["traits"].items())), highlight=False)
    v = c["value"]
    since = f", last {v['days_since_last_order']} days ago" if v["days_since_last_order"] is not None else ""
    aov = f", average order {_money(v['average_order_value'], currency)}" if v["average_order_value"] else ""
    out.print(f"[bold]lifetime value[/bold] {_money(v['lifetime_value'], currency)} net of refunds: "
              f"{v['orders']:,} orders{since}{aov}", highlight=False)  # fmt: skip
    rfm = c["rfm"]
    if rfm is None:
        out.print("[bold]RFM[/bold] – (no order up to this day)")
    else:
        m = rfm["m"] if rfm["m"] is not None else "–"
        out.print(f"[bold]RFM[/bold] {rfm['segment']} (R{rfm['r']} F{rfm['f']} M{m}: {rfm['recency_days']} days, "
                  f"{rfm['frequency']} orders, {_money(rfm['monetary'], currency)})", highlight=False)  # fmt: skip
    p = c["prediction"]
    if p is None:
        out.print(f"[bold]predicted[/bold] – ({c['prediction_note']})", highlight=False)
    else:
        out.print(f"[bold]predicted[/bold] {p['predicted_value']:,.2f} {currency} in the next {p['horizon_weeks']} "
                  f"weeks: {p['expected_purchases']:.2f} purchases, P(alive) {p['p_alive']:.0%}",
                  highlight=False)  # fmt: skip
    out.print(f"[bold]audiences[/bold] {escape(', '.join(c['audiences'])) or '–'}", highlight=False)
    table = Table("time", "event", "details", title=f"latest {len(c['timeline'])} of {c['events']:,} events")
    for e in c["timeline"]:
        details = ", ".join(f"{k} {val}" for k, val in e["properties"].items())
        if "order" in e:
            details = f"{_money(e['order']['value'], currency)} {e['order']['status']}; {details}"
        table.add_row(_when(e["ts"]), escape(e["event"] or e["type"]), escape(details))
    out.print(table)


def _text(value: str | None) -> str:
    """Text from the store, shown as it is (a user id such as "[bold]" is not Rich markup)."""
    return "–" if value is None else escape(value)


def _money(value: str | None, currency: str) -> str:
    return "–" if value is None else f"{Decimal(value):,} {currency}"


def _when(value: str | None) -> str:
    return "–" if value is None else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
