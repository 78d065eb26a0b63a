"""Real stores for the audience and customer queries, built through the Segment import path
(tests/engine/sales_fixtures.py):

* ``random_messages(seed)`` — a shop of 40 people over the first quarter of 2026 drawn from a
  seed: visits at any hour (the store's days are Asia/Riyadh, so some cross midnight), product
  views and adds over six products in three categories, orders of one to three products (some
  cancelled, some partly refunded, some in a currency without a rate), identify calls with
  emails and traits, guests who never identify and visitors who identify later.
* ``merge_store(directory)`` — one shopper seen first as two people (a guest on a phone, a
  signed-in user on a laptop, each with an order), then merged by an identify call that arrives
  in a later import: the guest's person is merged into the user's.
* ``facts_rows(store, source)`` — the store's ``events``, ``orders`` and ``people`` as plain
  rows, for the plain evaluator (tests/engine/reference_audiences.py).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from masar.engine.kpis import sales_facts
from masar.importers.run import import_path
from tests.engine.sales_fixtures import Messages, Person, build_store

PRODUCTS = {"p1": "Shoes", "p2": "Shoes", "p3": "Bags", "p4": "Bags", "p5": "Hats", "p6": "Hats"}
START = date(2026, 1, 1)
DAYS = 90


def random_messages(seed: int, people: int = 40) -> Messages:
    rng = random.Random(seed)
    m = Messages()
    orders = 0
    for i in range(people):
        kind = rng.choice(["user", "user", "guest", "later"])
        who = Person(
            user_id=None if kind == "guest" else f"c{i}",
            anonymous_id=None if kind == "user" else f"anon{i}",
            device=rng.choice(["desktop", "mobile"]),
            country="SA",
        )
        visits = sorted(rng.sample(range(DAYS * 24), rng.randint(1, 8)))
        for n, hour in enumerate(visits):
            at = datetime.combine(START, datetime.min.time(), UTC) + timedelta(hours=hour, minutes=rng.randint(0, 50))
            anonymous = kind == "later" and n == 0  # browses first, identifies on the second visit
            m.page(who, at, anonymous=anonymous)
            if n == 0 and kind == "user" or n == 1 and kind == "later":
                m.identify(who, at + timedelta(seconds=10), email=f"c{i}@example.com",
                           gender=rng.choice(["f", "m"]))  # fmt: skip
            viewed = rng.sample(list(PRODUCTS), rng.randint(0, 3))
            for k, product in enumerate(viewed):
                for view in range(rng.randint(1, 4)):
                    m.track(who, at + timedelta(seconds=20 + 10 * k + view), "Product Viewed", product_id=product,
                            category=PRODUCTS[product], price=rng.choice([20, 45, 120]), anonymous=anonymous)  # fmt: skip
            added = [p for p in viewed if rng.random() < 0.5]
            for k, product in enumerate(added):
                m.track(who, at + timedelta(minutes=2, seconds=k), "Product Added", product_id=product,
                        category=PRODUCTS[product], price=45, quantity=1, anonymous=anonymous)  # fmt: skip
            if added and rng.random() < 0.6 or rng.random() < 0.15:
                orders += 1
                order_id = f"R{seed}-{orders}"
                bought = added or rng.sample(list(PRODUCTS), rng.randint(1, 3))
                currency = "EGP" if rng.random() < 0.05 else "SAR"
                placed = at + timedelta(minutes=5)
                m.track(who, placed, "Order Completed", order_id=order_id, total=rng.choice([35, 80, 80, 150, 420]),
                        currency=currency, anonymous=anonymous,
                        products=[{"product_id": p, "category": PRODUCTS[p], "quantity": 1} for p in bought])  # fmt: skip
                if rng.random() < 0.1:
                    m.track(who, placed + timedelta(hours=1), "Order Cancelled", server=True, order_id=order_id)
                elif rng.random() < 0.15:
                    m.track(who, placed + timedelta(days=2), "Order Refunded", server=True, order_id=order_id,
                            total=20, currency=currency)  # fmt: skip
    return m


def random_store(directory: Path, seed: int) -> Any:
    return build_store(directory, random_messages(seed))


GUEST = Person(None, "phone-7", "mobile", "SA")
USER = Person("shopper-7", None, "desktop", "SA")
BOTH = Person("shopper-7", "phone-7", "mobile", "SA")
OTHERS = [Person(f"other-{i}", None, "desktop", "SA") for i in range(3)]


def merge_store(directory: Path) -> Any:
    first = Messages()
    first.page(GUEST, "2026-03-01T08:00:00Z")
    first.track(GUEST, "2026-03-01T08:01:00Z", "Product Viewed", product_id="p1", category="Shoes")
    first.track(GUEST, "2026-03-01T08:05:00Z", "Order Completed", order_id="G1", total=80, currency="SAR",
                products=[{"product_id": "p1", "category": "Shoes"}])  # fmt: skip
    first.page(USER, "2026-03-03T19:00:00Z")
    first.track(USER, "2026-03-03T19:05:00Z", "Order Completed", order_id="U1", total=120, currency="SAR",
                products=[{"product_id": "p3", "category": "Bags"}])  # fmt: skip
    for i, other in enumerate(OTHERS):
        first.page(other, f"2026-03-0{i + 2}T10:00:00Z")
        first.identify(other, f"2026-03-0{i + 2}T10:01:00Z", email=f"other{i}@example.com")
        first.track(other, f"2026-03-0{i + 2}T10:05:00Z", "Order Completed", order_id=f"O{i}", total=50 + 10 * i,
                    currency="SAR")  # fmt: skip
    store = build_store(directory, first)
    later = Messages()
    later.identify(BOTH, "2026-03-10T12:00:00Z", email="Shopper7@Example.com", plan="gold")
    later.page(BOTH, "2026-03-10T12:01:00Z")
    later.track(BOTH, "2026-03-10T12:02:00Z", "Product Added", product_id="p5", category="Hats", price=30)
    for row in later.rows:  # message ids of their own: not duplicates of the first import's
        row["messageId"] = "later-" + row["messageId"]
    report = import_path(store, store.source("S"), later.write(directory / "later.jsonl"), preset="segment")
    assert report.rejected == 0 and report.imported == 3, report
    return store


def facts_rows(store: Any, source: str = "S") -> tuple[list[dict], list[dict], list[dict]]:
    ctx = store.query_context(store.source(source))
    sales_facts(ctx)

    def rows(sql: str) -> list[dict[str, Any]]:
        return ctx.con.sql(sql).to_arrow_table().to_pylist()

    events = rows(
        "SELECT person, ts, day, type, event, session_id, product_id, category, order_id, currency, price, total, "
        "quantity, channel, device_type, country, properties, traits FROM events"
    )
    orders = rows("SELECT order_key, person, ts, day, value, refunded, cancelled FROM orders")
    people = rows("SELECT person, first_day FROM people")
    return events, orders, people
