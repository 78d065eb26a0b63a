"""Query results are kept per version of the data: asked again, the same answer comes without
recomputing; new events, new rates, spend or targets give a fresh one."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from masar.engine import RUNNERS
from masar.engine.facts import Rate
from masar.importers.run import import_path
from tests.engine.sales_fixtures import Messages, Person, build_store

A = Person("u1", None, "desktop", "SA")
Q = {"kind": "metrics", "source": "S", "metrics": ["gross_revenue", "orders", "ad_spend"],
     "from": "2026-03-01", "to": "2026-03-31"}  # fmt: skip


def values(result):
    return {m["name"]: m["value"] for m in result.to_dict()["metrics"]}


def test_results_are_reused_until_what_they_read_changes(tmp_path, monkeypatch):
    m = Messages()
    m.track(A, "2026-03-05T09:10:00Z", "Order Completed", order_id="O1", total=100, currency="AED")
    store = build_store(tmp_path, m, rates=[Rate(date(2026, 3, 1), "AED", "SAR", Decimal("1.02"))])
    calls = []
    real = RUNNERS["metrics"]
    monkeypatch.setitem(RUNNERS, "metrics", lambda ctx, q: calls.append(q) or real(ctx, q))
    try:
        first = store.run(Q)
        assert values(first) == {"gross_revenue": "102.00", "orders": 1, "ad_spend": "0.00"}
        assert store.run(dict(Q)) is first and len(calls) == 1  # the same question: not recomputed
        assert values(store.run({**Q, "to": "2026-03-30"})) == values(first) and len(calls) == 2

        store.set_exchange_rates([Rate(date(2026, 3, 1), "AED", "SAR", Decimal("1.03"))])
        assert values(store.run(Q))["gross_revenue"] == "103.00"
        store.set_ad_spend(store.source("S"), [{"day": date(2026, 3, 2), "channel": "Paid Search", "campaign": "c",
                                                "spend": Decimal("50"), "currency": "SAR"}])  # fmt: skip
        assert values(store.run(Q))["ad_spend"] == "50.00"

        more = Messages()
        more.track(A, "2026-03-06T09:10:00Z", "Order Completed", order_id="O2", total=10, currency="SAR")
        more.rows[0]["messageId"] = "later-1"  # Messages numbers from m1: not a resend of the first
        report = import_path(store, store.source("S"), more.write(tmp_path / "more.jsonl"), preset="segment")
        assert report.rejected == 0
        assert values(store.run(Q))["orders"] == 2  # new events: a new frame, a new answer
        assert len(calls) == 5
    finally:
        store.close()
