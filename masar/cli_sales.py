"""Sales commands of the CLI: KPIs, exchange rates, ad spend, targets, customers, lifetime value.

Registered on the same Typer app as ``masar.cli`` (which imports this module at its end); the
same thin layer: build a query, run it through the store, print JSON or a table.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from masar.cli import (
    DataDir,
    Json,
    SourceName,
    StoreOpt,
    _build_query,
    _open,
    _pct,
    _print_json,
    app,
    edge,
    out,
)
from masar.errors import InvalidInput

rates_app = typer.Typer(help="Exchange rates into each store's reporting currency.", no_args_is_help=True)
spend_app = typer.Typer(help="Ad spend per day, channel and campaign.", no_args_is_help=True)
targets_app = typer.Typer(help="Monthly sales targets and their pace.", no_args_is_help=True)
app.add_typer(rates_app, name="rates")
app.add_typer(spend_app, name="spend")
app.add_typer(targets_app, name="targets")

Export = Annotated[
    Path | None, typer.Option("--export", help="Also write the table to FILE.csv or FILE.xlsx.")
]
QueryFile = Annotated[
    Path | None, typer.Option("--query", help="A JSON query file (- for stdin); options override it.")
]
DateFrom = Annotated[
    str | None, typer.Option("--from", help="First day (YYYY-MM-DD, the store's time zone).")
]
DateTo = Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")]
OptionalSource = Annotated[
    str | None, typer.Option("--source", help="The source (store) name.")
]


def _run(data_dir: Path | None, store_url: str | None, query: dict[str, Any], export: Path | None = None) -> dict[str, Any]:
    store = _open(data_dir, store_url)
    try:
        result = store.run(query)
        if export is not None:
            from masar.exports import write_table

            write_table(result.table(), export)
        return result.to_dict()
    finally:
        store.close()


def _report_errors(errors: list[str], what: str) -> None:
    if errors:
        from masar.cli import err

        err.print(f"{len(errors)} {what} rejected:", highlight=False)
        for line in errors[:20]:
            err.print(f"  {line}", highlight=False)
        if len(errors) > 20:
            err.print(f"  … and {len(errors) - 20} more", highlight=False)


@app.command("metrics")
@edge
def metrics(
    source: OptionalSource = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="A metric name (repeatable; default: the headline set)."),
    ] = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    granularity: Annotated[str, typer.Option(help="day, week, month or none.")] = "day",
    breakdown: Annotated[
        str | None,
        typer.Option(help="channel, campaign, device, country, customer_type, first_channel, first_campaign, "
                     "age_band, gender, city, person.TRAIT."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Breakdown values shown before Other.")] = 10,
    no_compare: Annotated[bool, typer.Option("--no-compare", help="Skip the previous period.")] = False,
    churn_days: Annotated[
        int | None, typer.Option(help="Days without an order after which a customer counts as churned.")
    ] = None,
    query_file: QueryFile = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Sales KPIs for a date range, with the previous period, by period and by dimension."""
    query = _build_query(
        "metrics",
        query_file,
        {"source": source, "metrics": metric, "from": date_from, "to": date_to, "breakdown": breakdown,
         "churn_days": churn_days},
        {"granularity": (None if granularity == "none" else granularity, "day"), "breakdown_limit": (limit, 10),
         "compare": (not no_compare, True)},
    )  # fmt: skip
    result = _run(data_dir, store_url, query, export)
    if json:
        _print_json(result)
        return
    table = Table(title=f"{result['range']['from']} – {result['range']['to']} ({result['currency']})")
    for column in ("Metric", "Value", "Previous", "Change"):
        table.add_column(column, justify="left" if column == "Metric" else "right")
    for m in result["metrics"]:
        table.add_row(m["label"], _show(m, m["value"]), _show(m, m["previous"]), _pct(m["change"]))
    out.print(table)
    if result["breakdown"]:
        names = [m["name"] for m in result["metrics"] if m["name"] != "sales_growth_rate"]
        by = Table(title=f"by {result['breakdown_property']}")
        by.add_column(result["breakdown_property"])
        for name in names:
            by.add_column(name, justify="right")
        units = {m["name"]: m for m in result["metrics"]}
        for row in result["breakdown"]:
            label = (
                "Other"
                if row["value"] == "$other"
                else str(row["value"] if row["value"] is not None else "(not set)")
            )
            by.add_row(label, *[_show(units[n], row["values"].get(n)) for n in names])
        out.print(by)
    for item in result["unconverted"]:
        counts = [f"{item[k]} {what}" for k, what in
                  (("orders", "orders"), ("refunds", "refunds"), ("spend_rows", "spend rows"), ("cart_lines", "cart lines"))
                  if item.get(k)]  # fmt: skip
        out.print(f"[yellow]{', '.join(counts)} in {item['currency']} have no exchange rate: "
                  f"their amounts are left out (masar rates import).[/yellow]")  # fmt: skip


def _show(metric: dict[str, Any], value: Any) -> str:
    if value is None:
        return "–"
    if metric["unit"] == "rate":
        return _pct(value)
    if metric["unit"] == "money":
        return f"{Decimal(value):,}"
    if metric["unit"] == "days":
        return f"{value:.1f} d"
    if metric["unit"] == "ratio":
        return f"{value:.2f}×"
    return f"{value:,}"


@app.command("platforms")
@edge
def platforms(
    source: OptionalSource = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    query_file: QueryFile = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Sessions, conversion, orders, revenue, ad spend and ROAS per social and ad platform, paid
    and organic apart."""
    query = _build_query("platforms", query_file, {"source": source, "from": date_from, "to": date_to}, {})
    result = _run(data_dir, store_url, query, export)
    if json:
        _print_json(result)
        return
    table = Table(title=f"Platforms {result['range']['from']} – {result['range']['to']} ({result['currency']})")
    table.add_column("Platform", no_wrap=True)
    for column in ("Sessions", "Conv.", "Orders", "Revenue", "Spend", "ROAS"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(
            f"{row['platform'] or '(none)'} {row['traffic']}", f"{row['sessions']:,}", _pct(row["conversion_rate"]),
            f"{row['orders']:,}", f"{Decimal(row['revenue']):,}", f"{Decimal(row['ad_spend']):,}",
            "–" if row["roas"] is None else f"{row['roas']:.2f}×",
        )  # fmt: skip
    out.print(table)


@rates_app.command("import")
@edge
def rates_import(
    file: Annotated[Path, typer.Argument(help="CSV with date,base,quote,rate (1 base = rate quote).")],
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Load exchange rates; a rate for the same day and pair replaces the old one."""
    from masar.importers.sales import read_rates

    parsed = read_rates(file)
    store = _open(data_dir, store_url)
    try:
        written = store.set_exchange_rates(parsed.rows)
    finally:
        store.close()
    if json:
        _print_json({"rates": written, "rejected": len(parsed.errors), "errors": parsed.errors})
        return
    out.print(f"Loaded {written:,} exchange rates.")
    _report_errors(parsed.errors, "rows")


@spend_app.command("import")
@edge
def spend_import(
    file: Annotated[Path, typer.Argument(help="CSV with date,channel,campaign,spend[,currency].")],
    source: SourceName,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Load ad spend; importing the same rows again replaces them (adds nothing)."""
    from masar.importers.sales import read_spend

    store = _open(data_dir, store_url)
    try:
        found = store.source(source)
        parsed = read_spend(file, found.currency)
        written = store.set_ad_spend(found, parsed.rows)
    finally:
        store.close()
    if json:
        _print_json({"rows": written, "rejected": len(parsed.errors), "errors": parsed.errors})
        return
    out.print(f"Loaded {written:,} spend rows for {source!r}.")
    _report_errors(parsed.errors, "rows")


_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@targets_app.command("set")
@edge
def targets_set(
    source: SourceName,
    month: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    revenue: Annotated[str | None, typer.Option(help="Net revenue target, in the store's currency.")] = None,
    orders: Annotated[int | None, typer.Option(help="Orders target.")] = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Set (or with neither --revenue nor --orders, clear) a month's targets."""
    if not _MONTH.match(month):
        raise InvalidInput(f"--month {month!r} is not a month: use YYYY-MM")
    amount = None
    if revenue is not None:
        try:
            amount = Decimal(revenue.replace(",", ""))
        except InvalidOperation:
            raise InvalidInput(f"--revenue {revenue!r} is not a number") from None
        if not amount.is_finite() or amount <= 0:
            raise InvalidInput("--revenue must be a positive number")
    if orders is not None and orders <= 0:
        raise InvalidInput("--orders must be a positive number")
    store = _open(data_dir, store_url)
    try:
        store.set_target(store.source(source), month, revenue=amount, orders=orders)
    finally:
        store.close()
    if json:
        _print_json(
            {"month": month, "revenue": str(amount) if amount is not None else None, "orders": orders}
        )
    else:
        out.print(
            f"Target for {month} set."
            if amount is not None or orders is not None
            else f"Target for {month} cleared."
        )


@targets_app.command("show")
@edge
def targets_show(
    source: SourceName,
    month: Annotated[str | None, typer.Option(help="Only this month, YYYY-MM.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The last day counted as actual (default: the data's last complete day)."
        ),
    ] = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Attainment to date and the projected end of each month with a target (its pace)."""
    result = _run(data_dir, store_url, {"kind": "targets", "source": source, "month": month, "as_of": as_of}, export)
    if json:
        _print_json(result)
        return
    if not result["months"]:
        which = f" for {month}" if month else ""
        out.print(f"No target{which}: set one with `masar targets set`.")
        return
    for measure, label, shown in (("revenue", f"Net revenue ({result['currency']})", _money),
                                  ("orders", "Orders", _count)):  # fmt: skip
        rows = [(row, row[measure]) for row in result["months"] if row[measure] is not None]
        if not rows:
            continue
        table = Table(title=f"{label} targets as of {result['as_of']}, {result['level']:.0%} ranges")
        for column in ("Month (days)", "Target", "Actual", "Projected", "Range", "On track"):
            table.add_column(column, justify="left" if column.startswith("Month") else "right")
        for row, m in rows:
            p, share = m["projected"], m["projected_attainment"]
            table.add_row(
                f"{row['month']} ({row['elapsed_days']}/{row['days']})",
                shown(m["target"]),
                "–" if m["actual"] is None else f"{shown(m['actual'])} ({_pct(m['attainment'])})",
                "–" if p is None else f"{shown(p['value'])} ({_pct(share['value'])})",
                "–" if p is None else f"{shown(p['lower'])} – {shown(p['upper'])}",
                {True: "yes", False: "no", None: "–"}[m["on_track"]],
            )
            if m["note"]:
                table.add_row("", f"[yellow]{m['note']}[/yellow]")
        out.print(table)


@app.command("forecast")
@edge
def forecast(
    source: OptionalSource = None,
    measure: Annotated[str, typer.Option(help="revenue (net revenue) or orders.")] = "revenue",
    horizon: Annotated[int, typer.Option(help="Days to forecast, e.g. 30 or 90 (1 to 366).")] = 30,
    level: Annotated[float, typer.Option(help="Level of the prediction intervals.")] = 0.9,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day of the history (default: the first order).")
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option("--to", help="Last day of the history (default: the data's last complete day)."),
    ] = None,
    folds: Annotated[int, typer.Option(help="Backtest folds (0: no backtest).")] = 3,
    query_file: QueryFile = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Forecast daily net revenue or orders with prediction intervals, and how the same forecast
    did on the store's recent past (backtest)."""
    query = _build_query(
        "forecast", query_file, {"source": source, "from": date_from, "to": date_to},
        {"measure": (measure, "revenue"), "horizon": (horizon, 30), "level": (level, 0.9), "folds": (folds, 3)},
    )  # fmt: skip
    result = _run(data_dir, store_url, query, export)
    if json:
        _print_json(result)
        return
    from masar.model.money import minor_units

    places = minor_units(result["currency"]) if result["unit"] == "money" else 1

    def shown(value: float | None) -> str:
        return "–" if value is None else f"{value:,.{places}f}"

    points = result["points"]
    label = f"Net revenue ({result['currency']})" if result["unit"] == "money" else "Orders"
    table = Table(title=f"{label} forecast, {result['model']} on {result['history_days']} days of history")
    for column in ("Day", "Forecast", "Lower", "Upper"):
        table.add_column(column, justify="left" if column == "Day" else "right")
    for p in points:
        table.add_row(p["day"], shown(p["value"]), shown(p["lower"]), shown(p["upper"]))
    out.print(table)
    total = result["total"]
    out.print(f"Total {points[0]['day']} – {points[-1]['day']}: {shown(total['value'])} "
              f"({shown(total['lower'])} – {shown(total['upper'])}, {result['level']:.0%})")  # fmt: skip
    bt = result["backtest"]
    if query.get("folds") == 0:
        return
    if not bt["folds"]:
        out.print(f"Backtest: the history is too short for a fold of {len(points)} days.")
        return
    off = "–" if bt["mape_total"] is None else _pct(bt["mape_total"])
    folds = f"{len(bt['folds'])} fold{'s' if len(bt['folds']) > 1 else ''}"
    out.print(f"Backtest ({folds} of {bt['horizon']} days): {shown(bt['mae'])} off per day on "
              f"average (MAE), totals {off} off, {_pct(bt['coverage'])} of days within their range.")  # fmt: skip


def _money(value: str | None) -> str:
    return "–" if value is None else f"{Decimal(value):,}"


def _count(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _print_or_json(
    result: dict[str, Any], json: bool, title: str, columns: list[str], rows: list[dict[str, Any]]
) -> None:
    if json:
        _print_json(result)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["–" if row.get(c) is None else str(row.get(c)) for c in columns])
    out.print(table)


@app.command("cohorts")
@edge
def cohorts(
    source: OptionalSource = None,
    by: Annotated[str, typer.Option(help="first_order, first_visit or signup.")] = "first_order",
    period: Annotated[str, typer.Option(help="week or month.")] = "month",
    measure: Annotated[str, typer.Option(help="purchasing, active or revenue.")] = "purchasing",
    mode: Annotated[str, typer.Option(help="first_time or recurring.")] = "first_time",
    periods: Annotated[int, typer.Option(help="How many periods.")] = 12,
    channel: Annotated[str | None, typer.Option(help="Only people whose first channel is this.")] = None,
    query_file: QueryFile = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Retention (or cumulative revenue) by cohort."""
    query = _build_query(
        "cohorts", query_file, {"source": source, "channel": channel},
        {"by": (by, "first_order"), "period": (period, "month"), "measure": (measure, "purchasing"),
         "mode": (mode, "first_time"), "periods": (periods, 12)},
    )  # fmt: skip
    result = _run(data_dir, store_url, query, export)
    rows = [{"cohort": r["cohort"], "size": r["size"],
             **{str(i): (None if v is None else (f"{v:.1%}" if measure != "revenue" else f"{v:,.2f}"))
                for i, v in enumerate(r["values"])}} for r in result["rows"]]  # fmt: skip
    width = max((len(r["values"]) for r in result["rows"]), default=0)
    _print_or_json(
        result, json, f"cohorts by {by}, {measure}", ["cohort", "size", *map(str, range(width))], rows
    )


@app.command("rfm")
@edge
def rfm(
    source: OptionalSource = None,
    segment: Annotated[
        str | None, typer.Option(help="List the customers of this segment (Champions, At Risk, ...).")
    ] = None,
    customers: Annotated[
        bool, typer.Option("--customers", help="List customers instead of segment sizes.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Customers listed.")] = 50,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The day to score as of (default: the data's last day).")
    ] = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """RFM segments: sizes and revenue shares, or the customers of a segment (exportable)."""
    listing = customers or segment is not None
    query: dict[str, Any] = {"kind": "rfm_customers" if listing else "rfm", "source": source, "as_of": as_of}
    if source is None:
        raise InvalidInput("name the source with --source", code="invalid_query")
    if listing:
        query.update({"segment": segment, "limit": None if export else limit})
    result = _run(data_dir, store_url, query, export)
    if listing:
        columns = ["user_id", "email", "recency_days", "frequency", "monetary", "r", "f", "m", "segment"]
        _print_or_json(result, json, f"{segment or 'all customers'} ({result['total']:,})", columns,
                       result["customers"][:limit])  # fmt: skip
    else:
        rows = [
            {**s, "share": f"{s['share']:.1%}", "revenue_share": f"{s['revenue_share']:.1%}"}
            for s in result["segments"]
        ]
        _print_or_json(result, json, f"RFM as of {result['as_of']} ({result['customers']:,} customers)",
                       ["segment", "customers", "share", "revenue", "revenue_share"], rows)  # fmt: skip


ltv_app = typer.Typer(help="Customer lifetime value.", no_args_is_help=True)
app.add_typer(ltv_app, name="ltv")


@ltv_app.command("fit")
@edge
def ltv_fit(
    source: SourceName,
    calibration_end: Annotated[
        str, typer.Option("--calibration-end", help="Last day of the calibration period (YYYY-MM-DD).")
    ],
    unit: Annotated[str, typer.Option(help="day or week.")] = "week",
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Fit BG/NBD (purchase frequency, P(alive)) and Gamma-Gamma (spend) to the store's orders."""
    result = _run(
        data_dir, store_url, {"kind": "ltv_fit", "source": source, "calibration_end": calibration_end, "unit": unit}
    )
    if json:
        _print_json(result)
        return
    b, g = result["bgnbd"], result["gamma_gamma"]
    out.print(f"{result['customers']:,} customers")
    out.print(f"BG/NBD: r {b['r']:.4f}, α {b['alpha']:.4f}, a {b['a']:.4f}, b {b['b']:.4f}, "
              f"log-likelihood {b['log_likelihood']:.2f}")  # fmt: skip
    out.print(
        f"Gamma-Gamma: p {g['p']:.4f}, q {g['q']:.4f}, γ {g['gamma']:.4f}, log-likelihood {g['log_likelihood']:.2f}"
    )


_LTV_GROUPS = {"cohort": "cohort_month", "channel": "first_channel", "segment": "rfm_segment"}
LtvBy = Annotated[
    str | None,
    typer.Option("--by", help="Also by cohort (month of the first order), channel (first channel) or segment (RFM)."),
]
LtvAsOf = Annotated[str | None, typer.Option("--as-of", help="The last day read (default: the data's last day).")]
LtvLimit = Annotated[int, typer.Option(help="Customers listed (all of them with --export).")]
LtvCustomer = Annotated[str | None, typer.Option("--customer", help="Only this customer, by user id.")]
LtvPerson = Annotated[int | None, typer.Option("--person", help="Only this customer, by person id.")]


def _ltv_query(mode: str, source: str, by: str | None, as_of: str | None, limit: int, export: Path | None,
               customer: str | None, person: int | None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    if by is not None and by not in _LTV_GROUPS:
        raise InvalidInput(f"--by must be one of {', '.join(_LTV_GROUPS)}, got {by!r}", code="invalid_query")
    if customer is not None and person is not None:
        raise InvalidInput("give --customer or --person, not both", code="invalid_query")
    query = {"kind": "ltv", "mode": mode, "source": source, "as_of": as_of,
             "group_by": _LTV_GROUPS[by] if by else None, "customer": person if person is not None else customer,
             "limit": None if export is not None and by is None else limit, **extra}  # fmt: skip
    return {k: v for k, v in query.items() if v is not None or k == "limit"}


def _ltv_groups(result: dict[str, Any], columns: dict[str, str], money: str) -> None:
    if "groups" not in result:
        return
    name = result["group_by"]
    table = Table(title=f"by {name}")
    table.add_column(name)
    for label in columns.values():
        table.add_column(label, justify="right")
    for row in result["groups"]:
        cells = [_ltv_cell(key, row[key], money) for key in columns]
        table.add_row("(none)" if row[name] is None else str(row[name]), *cells)
    out.print(table)


def _ltv_customers(result: dict[str, Any], columns: dict[str, str], money: str, limit: int) -> None:
    table = Table(title=f"customers by {result['sort']} ({result['total']:,})")
    table.add_column("person", justify="right")
    table.add_column("user id")
    for label in columns.values():
        table.add_column(label, justify="right")
    for row in result["rows"][:limit]:
        cells = [_ltv_cell(key, row[key], money) for key in columns]
        table.add_row(str(row["person"]), row["user_id"] or "–", *cells)
    out.print(table)


def _ltv_cell(key: str, value: Any, money: str) -> str:
    if value is None:
        return "–"
    if key in ("p_alive", "mean_p_alive"):
        return _pct(value)
    if key.endswith(("value", "revenue", "per_customer")) or key in ("value_3m", "value_6m", "value_12m"):
        return f"{float(value):,.2f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@ltv_app.command("predict")
@edge
def ltv_predict(
    source: SourceName,
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="Days ahead to predict.")] = 365,
    by: LtvBy = None,
    as_of: LtvAsOf = None,
    unit: Annotated[str, typer.Option(help="day or week: the time scale the models are fitted in.")] = "week",
    discount_rate: Annotated[float, typer.Option("--discount-rate", help="Monthly discount rate, e.g. 0.01.")] = 0.0,
    limit: LtvLimit = 20,
    customer: LtvCustomer = None,
    person: LtvPerson = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Predicted lifetime value: P(alive), expected purchases and value per customer (BG/NBD and Gamma-Gamma)."""
    query = _ltv_query("predicted", source, by, as_of, limit, export, customer, person, horizon_days=horizon_days,
                       unit=unit, discount_rate=discount_rate)  # fmt: skip
    result = _run(data_dir, store_url, query, export)
    if json:
        _print_json(result)
        return
    money = result["currency"]
    out.print(
        f"{result['customers']:,} customers as of {result['as_of']}, next {result['horizon_days']:,} days: "
        f"predicted value {result['predicted_value']:,.2f} {money} ({result['mean_predicted_value']:,.2f} per "
        f"customer), {result['expected_purchases']:,.1f} purchases, {result['expected_active']:,.1f} expected "
        f"still active (mean P(alive) {_pct(result['mean_p_alive'])})",
        highlight=False,
    )
    _ltv_groups(result, {"customers": "customers", "mean_p_alive": "mean P(alive)",
                         "expected_purchases": "purchases", "predicted_value": f"value ({money})",
                         "mean_predicted_value": "per customer"}, money)  # fmt: skip
    _ltv_customers(result, {"frequency": "repeat days", "p_alive": "P(alive)", "expected_purchases": "purchases",
                            "expected_value": "per purchase", "predicted_value": f"value ({money})"}, money, limit)  # fmt: skip


@ltv_app.command("historical")
@edge
def ltv_historical(
    source: SourceName,
    by: LtvBy = None,
    as_of: LtvAsOf = None,
    limit: LtvLimit = 20,
    customer: LtvCustomer = None,
    person: LtvPerson = None,
    export: Export = None,
    data_dir: DataDir = None,
    store_url: StoreOpt = None,
    json: Json = False,
) -> None:
    """Historical lifetime value: net revenue per customer to date, and per cohort, channel or segment."""
    query = _ltv_query("historical", source, by, as_of, limit, export, customer, person)
    result = _run(data_dir, store_url, query, export)
    if json:
        _print_json(result)
        return
    money = result["currency"]
    out.print(
        f"{result['customers']:,} customers to {result['as_of']}: net revenue {Decimal(result['net_revenue']):,} "
        f"{money} ({(result['net_revenue_per_customer'] or 0):,.2f} per customer) from {result['orders']:,} orders",
        highlight=False,
    )
    _ltv_groups(result, {"customers": "customers", "net_revenue": f"net revenue ({money})",
                         "net_revenue_per_customer": "per customer", "value_3m_per_customer": "first 3 months",
                         "value_6m_per_customer": "6 months", "value_12m_per_customer": "12 months",
                         "mean_tenure_days": "mean tenure (days)"}, money)  # fmt: skip
    _ltv_customers(result, {"first_day": "first order", "orders": "orders", "tenure_days": "tenure (days)",
                            "net_revenue": f"net revenue ({money})"}, money, limit)  # fmt: skip
