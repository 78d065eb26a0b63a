"""The ``platforms`` report (docs/metrics.md, platforms) on stores built through the real import
path, its rows worked out by hand, its totals against the metrics query, and the CLI.

``platform_store``'s cast. Times are UTC, all in March 2026 unless said; the store's days are
Asia/Riyadh. Every visit is one page view, with the order (if any) 10 minutes later in it.

===== ====== ============================================= ===================== ==============
who   day    landing                                       platform (traffic)    orders
===== ====== ============================================= ===================== ==============
u1    Mar 2  utm instagram / paid_social / ig-spring       instagram (paid)      O1 100; O2 300
                                                                                 cancelled
u2    Mar 3  ?fbclid, referrer l.instagram.com             instagram (organic)   —
u3    Mar 4  ?fbclid, no referrer                          facebook (organic)    O3 50
u4    Mar 5  ?gclid                                        google (paid)         O4 200
u4    Mar 20 referrer google.com.sa                        google (organic)      —
u5    Mar 6  ?ScCid (Snapchat's spelling)                  snapchat (paid)       — (a cart)
u6    Mar 7  ?ttclid                                       tiktok (paid)         O5 80
u7    Mar 8  ?msclkid                                      bing (paid)           —
u8    Mar 9  referrer t.co                                 x (organic)           O6 60
u9    Mar 10 utm twitter / cpc / x-launch                  x (paid)              —
u10   Mar 11 referrer m.youtube.com                        youtube (organic)     —
u11   Mar 12 referrer wa.me                                whatsapp (organic)    —
u12   Mar 13 direct                                        none (organic)        O7 40
u13   Mar 14 utm newsletter / email / march                none (organic)        —
u14   Mar 15 utm summer_promo / cpc / summer and ?ttclid   tiktok (paid): the    O8 120
                                                           source is on no list,
                                                           the click id is
u15   Mar 16 no visit: an order sent from a server         none (organic)        O9 70
u16   Feb 20 utm instagram / paid_social / ig-spring       instagram (paid)      O10 500
===== ====== ============================================= ===================== ==============

Spend (SAR): Mar 2 "Meta Ads" / ig-spring 50 → instagram (the campaign's visits are Instagram's,
though "Meta" names Facebook); Mar 5 "Google Ads" / brand 100 → google (no visit carries "brand":
the channel's name decides); Mar 10 "Paid Social" / x-launch 30 → x (u9's campaign); Mar 7
"TikTok" / (no campaign) 20 → tiktok; Mar 15 "Display" / retarget 10 → no platform; Feb 20
"Meta Ads" / ig-spring 999 (outside March).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from masar.errors import InvalidInput
from tests.conftest import masar_cli, masar_cli_json
from tests.engine.sales_fixtures import Messages, Person, build_store

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
IG_PAID = {"source": "instagram", "medium": "paid_social", "name": "ig-spring"}


def _who(n: int) -> Person:
    return Person(f"u{n}", None, "mobile", "SA")


def platform_messages() -> Messages:
    m = Messages()

    def visit(n: int, day: str, *, order: tuple[str, int] | None = None, **landing: Any) -> None:
        m.page(_who(n), f"{day}T09:00:00Z", **landing)
        if order:
            m.track(_who(n), f"{day}T09:10:00Z", "Order Completed", order_id=order[0], total=order[1])

    visit(1, "2026-03-02", campaign=IG_PAID, order=("O1", 100))
    m.track(_who(1), "2026-03-02T09:20:00Z", "Order Completed", order_id="O2", total=300)
    m.track(_who(1), "2026-03-02T09:30:00Z", "Order Cancelled", server=True, order_id="O2")
    visit(2, "2026-03-03", url="https://shop.sa/?fbclid=a1", referrer="https://l.instagram.com/")
    visit(3, "2026-03-04", url="https://shop.sa/?fbclid=a2", order=("O3", 50))
    visit(4, "2026-03-05", url="https://shop.sa/p?gclid=g1", order=("O4", 200))
    visit(4, "2026-03-20", referrer="https://www.google.com.sa/")
    visit(5, "2026-03-06", url="https://shop.sa/?ScCid=s1")
    m.track(_who(5), "2026-03-06T09:05:00Z", "Product Added", product_id="p1", price=30)
    visit(6, "2026-03-07", url="https://shop.sa/?ttclid=t1", order=("O5", 80))
    visit(7, "2026-03-08", url="https://shop.sa/?msclkid=b1")
    visit(8, "2026-03-09", referrer="https://t.co/xyz", order=("O6", 60))
    visit(9, "2026-03-10", campaign={"source": "twitter", "medium": "cpc", "name": "x-launch"})
    visit(10, "2026-03-11", referrer="https://m.youtube.com/watch?v=1")
    visit(11, "2026-03-12", referrer="https://wa.me/966500000000")
    visit(12, "2026-03-13", order=("O7", 40))
    visit(13, "2026-03-14", campaign={"source": "newsletter", "medium": "email", "name": "march"})
    visit(14, "2026-03-15", campaign={"source": "summer_promo", "medium": "cpc", "name": "summer"},
          url="https://shop.sa/?ttclid=t2", order=("O8", 120))  # fmt: skip
    m.track(_who(15), "2026-03-16T09:10:00Z", "Order Completed", server=True, order_id="O9", total=70)
    visit(16, "2026-02-20", campaign=IG_PAID, order=("O10", 500))
    return m


def _spend(day: date, channel: str, campaign: str, amount: str) -> dict[str, Any]:
    return {"day": day, "channel": channel, "campaign": campaign, "spend": Decimal(amount), "currency": "SAR"}


PLATFORM_SPEND = [
    _spend(date(2026, 3, 2), "Meta Ads", "ig-spring", "50"),
    _spend(date(2026, 3, 5), "Google Ads", "brand", "100"),
    _spend(date(2026, 3, 10), "Paid Social", "x-launch", "30"),
    _spend(date(2026, 3, 7), "TikTok", "", "20"),
    _spend(date(2026, 3, 15), "Display", "retarget", "10"),
    _spend(date(2026, 2, 20), "Meta Ads", "ig-spring", "999"),
]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("platforms")
    build_store(directory, platform_messages(), spend=PLATFORM_SPEND).close()
    yield directory


@pytest.fixture(scope="module")
def store(store_dir: Path) -> Iterator[Any]:
    import masar

    s = masar.open(store_dir / "data")
    yield s
    s.close()


def _row(platform, category, traffic, sessions, converted, orders, revenue, spend, roas) -> dict[str, Any]:
    # Every platform here has one visitor per session.
    return {"platform": platform, "category": category, "traffic": traffic, "sessions": sessions,
            "visitors": sessions, "converted_sessions": converted,
            "conversion_rate": converted / sessions if sessions else None, "orders": orders,
            "revenue": revenue, "ad_spend": spend, "roas": roas}  # fmt: skip


# Ranked by revenue, then sessions, then name; the rows without a platform last.
EXPECTED = [
    _row("tiktok", "social", "paid", 2, 2, 2, "200.00", "20.00", 10.0),  # u6 O5 80 + u14 O8 120
    _row("google", "search", "paid", 1, 1, 1, "200.00", "100.00", 2.0),  # O4; "Google Ads"
    _row("instagram", "social", "paid", 1, 1, 1, "100.00", "50.00", 2.0),  # O1 (O2 cancelled)
    _row("x", "social", "organic", 1, 1, 1, "60.00", "0.00", None),  # t.co
    _row("facebook", "social", "organic", 1, 1, 1, "50.00", "0.00", None),  # fbclid alone
    _row("bing", "search", "paid", 1, 0, 0, "0.00", "0.00", None),
    _row("google", "search", "organic", 1, 0, 0, "0.00", "0.00", None),
    _row("instagram", "social", "organic", 1, 0, 0, "0.00", "0.00", None),  # fbclid from Instagram
    _row("snapchat", "social", "paid", 1, 0, 0, "0.00", "0.00", None),
    _row("whatsapp", "social", "organic", 1, 0, 0, "0.00", "0.00", None),
    _row("x", "social", "paid", 1, 0, 0, "0.00", "30.00", 0.0),  # utm_source=twitter
    _row("youtube", "video", "organic", 1, 0, 0, "0.00", "0.00", None),
    # u12 (O7, direct) and u13 (email); u15's server-side order O9 has no visit.
    _row(None, None, "organic", 2, 1, 2, "110.00", "0.00", None),
    # The Display spend matched no platform.
    _row(None, None, "paid", 0, 0, 0, "0.00", "10.00", 0.0),
]


def test_platform_rows_by_hand(store):
    result = store.run({"kind": "platforms", "source": "S", **MARCH}).to_dict()
    assert result["kind"] == "platforms"
    assert result["currency"] == "SAR"
    assert result["range"] == MARCH
    assert result["rows"] == EXPECTED
    assert result["unconverted"] == []  # every amount is in SAR


def test_platform_rows_add_up_to_the_metrics(store):
    rows = store.run({"kind": "platforms", "source": "S", **MARCH}).to_dict()["rows"]
    totals = {m["name"]: m["value"] for m in store.run(
        {"kind": "metrics", "source": "S", **MARCH, "metrics": ["sessions", "orders", "gross_revenue", "ad_spend"],
         "granularity": None, "compare": False}).to_dict()["metrics"]}  # fmt: skip
    # 15 visits, O1 O3-O9 = 8 orders worth 720, spend 50 + 100 + 30 + 20 + 10.
    assert totals == {"sessions": 15, "orders": 8, "gross_revenue": "720.00", "ad_spend": "210.00"}
    assert sum(r["sessions"] for r in rows) == totals["sessions"]
    assert sum(r["orders"] for r in rows) == totals["orders"]
    assert sum(Decimal(r["revenue"]) for r in rows) == Decimal(totals["gross_revenue"])
    assert sum(Decimal(r["ad_spend"]) for r in rows) == Decimal(totals["ad_spend"])


def test_a_range_keeps_its_own_visits_orders_and_spend(store):
    rows = store.run({"kind": "platforms", "source": "S", "from": "2026-02-01", "to": "2026-02-28"}).to_dict()["rows"]
    # February: u16's Instagram visit and O10, and the 999 of "Meta Ads" / ig-spring.
    assert rows == [_row("instagram", "social", "paid", 1, 1, 1, "500.00", "999.00", 0.500501)]


def test_spend_of_one_campaign_on_two_platforms(tmp_path):
    """A campaign run on Google and on Meta: each spend row goes to the platform its channel
    stands for among the campaign's visits, not all to the campaign's most common platform."""
    m = Messages()
    ramadan = "ramadan"
    for n, source in ((1, "facebook"), (2, "facebook"), (3, "google")):
        m.page(_who(n), "2026-03-05T09:00:00Z", campaign={"source": source, "medium": "cpc", "name": ramadan})
    spend = [
        _spend(date(2026, 3, 3), "Paid Search", ramadan, "100"),  # the channel of the Google visit
        _spend(date(2026, 3, 3), "Paid Social", ramadan, "200"),  # the channel of the Meta visits
        _spend(date(2026, 3, 4), "Google Ads", ramadan, "5"),  # names google, one of the campaign's
        _spend(date(2026, 3, 4), "Meta", ramadan, "7"),  # names facebook (its alias)
    ]
    s = build_store(tmp_path, m, spend=spend)
    try:
        rows = s.run({"kind": "platforms", "source": "S", **MARCH}).to_dict()["rows"]
    finally:
        s.close()
    assert {(r["platform"], r["traffic"]): (r["sessions"], r["ad_spend"]) for r in rows} == {
        ("facebook", "paid"): (2, "207.00"),
        ("google", "paid"): (1, "105.00"),
    }


def test_store_overrides_name_their_own_platforms(tmp_path):
    # A store's own social site reports under its own name (docs/channels.md, overrides).
    m = Messages()
    m.page(_who(1), "2026-03-05T09:00:00Z", referrer="https://haraj.com.sa/ad/1")
    s = build_store(tmp_path, m)
    query = {"kind": "platforms", "source": "S", **MARCH}
    try:
        before = s.run(query).to_dict()["rows"]
        s.set_channel_rules(s.source("S"), {"social_sites": ["haraj.com.sa"]})
        after = s.run(query).to_dict()["rows"]
    finally:
        s.close()
    assert [(r["platform"], r["category"], r["traffic"], r["sessions"]) for r in before] == [
        (None, None, "organic", 1)
    ]
    # The referral's source (haraj.com.sa) is now on the store's social list.
    assert [(r["platform"], r["category"], r["traffic"], r["sessions"]) for r in after] == [
        ("haraj.com.sa", "social", "organic", 1)
    ]


def test_an_empty_store_has_no_rows(tmp_path):
    s = build_store(tmp_path, Messages())
    try:
        result = s.run({"kind": "platforms", "source": "S", **MARCH}).to_dict()
        with pytest.raises(InvalidInput, match="from must not be after to"):
            s.run({"kind": "platforms", "source": "S", "from": "2026-03-02", "to": "2026-03-01"})
    finally:
        s.close()
    assert result["rows"] == []


def test_cli_platforms_json_table_and_export(store_dir, store, tmp_path):
    data_dir = store_dir / "data"
    expected = store.run({"kind": "platforms", "source": "S", **MARCH}).to_dict()
    got = masar_cli_json("platforms", "--source", "S", "--from", MARCH["from"], "--to", MARCH["to"],
                         "--data-dir", data_dir)  # fmt: skip
    assert got == expected
    export = tmp_path / "platforms.csv"
    table = masar_cli("platforms", "--source", "S", "--from", MARCH["from"], "--to", MARCH["to"],
                      "--export", export, "--data-dir", data_dir).stdout  # fmt: skip
    assert "tiktok paid" in table and "whatsapp organic" in table and "(none) paid" in table
    with export.open(newline="") as f:
        exported = list(csv.DictReader(f))
    assert [(r["platform"], r["traffic"], r["revenue"], r["ad_spend"]) for r in exported] == [
        (r["platform"] or "", r["traffic"], r["revenue"], r["ad_spend"]) for r in EXPECTED
    ]
