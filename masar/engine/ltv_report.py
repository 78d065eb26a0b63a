"""The ``ltv`` query: lifetime value per customer and in total or by group, predicted or
historical, as one result for the CLI, the API and Python (docs/ltv.md, "The ltv query").

The models and sums are masar/engine/ltv.py's; this module adds what a report needs around them:
who each customer is (user id, email), one page of customers in a chosen order, one customer
looked up, and money in the reporting currency named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from masar.engine.ltv import UNITS, HistoricalLtv, LtvPrediction, historical_ltv, predict_from_orders
from masar.errors import InvalidInput, NotFound

SORTS = {
    "predicted": ("predicted_value", "p_alive", "expected_purchases", "expected_value", "frequency", "recency",
                  "T", "monetary_value"),
    "historical": ("net_revenue", "revenue", "refunded", "orders", "tenure_days", "first_day", "value_3m",
                   "value_6m", "value_12m"),
}  # fmt: skip


@dataclass(frozen=True)
class LtvReport:
    """Totals (and groups) over every customer, plus ``rows``: one page of customers, or the one
    asked for. ``prediction`` is set in mode predicted, ``historical`` in mode historical."""

    mode: str
    currency: str
    as_of: date
    horizon_days: int | None
    prediction: LtvPrediction | None
    historical: HistoricalLtv | None
    rows: pa.Table
    total: int  # customers the page is cut from: all of them, or 1 with a customer
    sort: str
    ascending: bool
    limit: int | None
    offset: int
    customer: int | str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "ltv", "mode": self.mode, "currency": self.currency,
                               "as_of": self.as_of.isoformat()}  # fmt: skip
        if self.prediction is not None:
            out["horizon_days"] = self.horizon_days
            out.update(self.prediction.to_dict())
        else:
            assert self.historical is not None
            out.update(self.historical.to_dict())
        out.update({
            "customer": self.customer, "sort": self.sort, "ascending": self.ascending, "total": self.total,
            "limit": self.limit, "offset": self.offset, "rows": [_jsonable(row) for row in self.rows.to_pylist()],
        })  # fmt: skip
        return out

    def table(self) -> pa.Table:
        """The groups when grouped, else the customers of ``rows``."""
        inner = self.prediction if self.prediction is not None else self.historical
        assert inner is not None
        return inner.groups_table() if inner.group_by is not None else self.rows


class LtvData(Protocol):
    """What the ltv report reads from a backend: the models and sums, and who customers are."""

    def prediction(self, as_of: date, horizon: float, unit: str, group_by: str | None,
                   discount_rate: float) -> LtvPrediction: ...  # fmt: skip
    def historical(self, as_of: date, group_by: str | None) -> HistoricalLtv: ...
    def persons_of_user(self, user_id: str) -> list[int]: ...
    def who(self, persons: list[int]) -> pa.Table: ...  # person, user_id, email


@dataclass(frozen=True)
class DuckDbLtvData:
    """LtvData of the facts on a DuckDB cursor."""

    con: duckdb.DuckDBPyConnection

    def prediction(self, as_of: date, horizon: float, unit: str, group_by: str | None,
                   discount_rate: float) -> LtvPrediction:  # fmt: skip
        return predict_from_orders(self.con, as_of, horizon, unit, group_by=group_by, discount_rate=discount_rate)

    def historical(self, as_of: date, group_by: str | None) -> HistoricalLtv:
        return historical_ltv(self.con, as_of, group_by)

    def persons_of_user(self, user_id: str) -> list[int]:
        rows = self.con.execute("SELECT DISTINCT person FROM people WHERE user_id = ?", [user_id]).fetchall()
        return [row[0] for row in rows]

    def who(self, persons: list[int]) -> pa.Table:
        self.con.register("_ltv_page", pa.table({"person": pa.array(persons, pa.int64())}))
        try:
            return self.con.sql(
                "SELECT person, any_value(user_id) AS user_id, any_value(email) AS email FROM people "
                "WHERE person IN (SELECT person FROM _ltv_page) GROUP BY person"
            ).to_arrow_table()
        finally:
            self.con.unregister("_ltv_page")


def ltv_report(con: duckdb.DuckDBPyConnection, **options: Any) -> LtvReport:
    """``ltv_report_from`` the ``orders`` and ``people`` tables on ``con``."""
    return ltv_report_from(DuckDbLtvData(con), **options)


def ltv_report_from(
    data: LtvData,
    *,
    currency: str,
    as_of: date,
    mode: str = "predicted",
    unit: str = "week",
    horizon_days: int = 365,
    discount_rate: float = 0.0,
    group_by: str | None = None,
    customer: int | str | None = None,
    sort: str | None = None,
    ascending: bool = False,
    limit: int | None = 100,
    offset: int = 0,
) -> LtvReport:
    """Lifetime value of the customers ``data`` reads.

    ``predicted``: both models fitted to the orders up to ``as_of`` (the calibration end), each
    customer's value over the next ``horizon_days``; ``historical``: net revenue up to ``as_of``.
    Rows are sorted by ``sort`` (descending unless ``ascending``; ties by person, unknown values
    last) and cut to ``limit`` rows from ``offset`` (``limit=None``: all)."""
    if mode not in SORTS:
        raise InvalidInput(f"mode must be predicted or historical, got {mode!r}", code="invalid_query")
    sort = sort or SORTS[mode][0]
    if sort not in SORTS[mode]:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS[mode])} for mode {mode}", code="invalid_query")
    prediction = historical = None
    if mode == "predicted":
        if unit not in UNITS:
            raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, got {unit!r}", code="invalid_query")
        # The horizon is asked in days; the unit only sets the time scale the models are fitted in.
        prediction = data.prediction(as_of, horizon_days / UNITS[unit], unit, group_by, discount_rate)
        customers = prediction.customers_table()
    else:
        historical = data.historical(as_of, group_by)
        customers = historical.customers_table()
    if customer is not None:
        customers = customers.filter(pc.is_in(customers["person"], pa.array(_persons(data, customer), pa.int64())))
        if customers.num_rows == 0:
            raise NotFound(f"{_who(customer)} has no order on or before {as_of.isoformat()}", code="not_found")
    return LtvReport(
        mode=mode, currency=currency, as_of=as_of, horizon_days=horizon_days if mode == "predicted" else None,
        prediction=prediction, historical=historical, rows=_page(data, customers, sort, ascending, limit, offset),
        total=customers.num_rows, sort=sort, ascending=ascending, limit=limit, offset=offset, customer=customer,
    )  # fmt: skip


def _persons(data: LtvData, customer: int | str) -> list[int]:
    """A number is a person id; text a user id (every person who has it)."""
    if isinstance(customer, int):
        return [customer]
    return data.persons_of_user(customer)


def _who(customer: int | str) -> str:
    return f"person {customer}" if isinstance(customer, int) else f"user {customer!r}"


def _page(data: LtvData, customers: pa.Table, sort: str, ascending: bool, limit: int | None,
          offset: int) -> pa.Table:  # fmt: skip
    """``limit`` customers from ``offset`` in the order asked, each with their user id and email
    (after ``person``). The page is cut before the backend is asked who they are: a page of 100
    looks up 100 people. The customers are already here (the models run on them), so a private
    DuckDB sorts them, whatever the backend."""
    # sort is one of SORTS (checked), never user text; the unknown (null) values go last either way
    order = f'"{sort}" {"ASC" if ascending else "DESC"} NULLS LAST, person'
    cut = "" if limit is None else "LIMIT $limit"
    local = duckdb.connect()
    try:
        local.register("_ltv_customers", customers)
        page = local.sql(f"SELECT * FROM _ltv_customers ORDER BY {order} {cut} OFFSET $offset",
                         params={"offset": offset} | ({} if limit is None else {"limit": limit})).to_arrow_table()  # fmt: skip
        who = data.who(page["person"].to_pylist())
        local.register("page", page)
        local.register("who", who.select(["person", "user_id", "email"]))
        return local.sql(
            f"""
            SELECT page.person, who.user_id::VARCHAR AS user_id, who.email::VARCHAR AS email, page.* EXCLUDE (person)
            FROM page LEFT JOIN who USING (person)
            ORDER BY {order}
            """
        ).to_arrow_table()
    finally:
        local.close()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, date) else v
            for k, v in row.items()}  # fmt: skip
