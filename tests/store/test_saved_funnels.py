"""Saved funnels in the embedded store's metadata: save, list, read, replace, delete, kept across
reopening, one namespace per source, templates expanded, and clear errors for bad names and
definitions."""

from __future__ import annotations

import time

import pytest

import masar
from masar.errors import InvalidInput, NotFound

CART = {"steps": ["Product Added", {"event": "Order Completed", "filters": [{"property": "revenue", "op": "gt", "value": 100}]}],
        "window": "2d", "breakdown": "device_type", "from": "2026-01-01", "to": "2026-01-31"}  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = masar.open(tmp_path / "data")
    store.create_source("Shop", currency="SAR")
    store.create_source("Other")
    yield store
    store.close()


def test_save_list_read_replace_delete(store, tmp_path):
    shop = store.source("Shop")
    assert store.saved_funnels(shop) == []
    saved = store.save_funnel(shop, "  سلة إلى طلب  ", CART, saved_by="analyst@example.com")
    # Kept as parsed, defaults spelt out and nothing left unset: it reads back meaning what it meant.
    assert saved.name == "سلة إلى طلب" and saved.saved_by == "analyst@example.com"
    assert saved.definition == {
        "steps": [
            {"event": "Product Added", "filters": [], "optional": False, "first_time": False},
            {"event": "Order Completed", "filters": [{"property": "revenue", "op": "gt", "value": 100}],
             "optional": False, "first_time": False},
        ],
        "window": 172800, "order": "ordered", "counting": "uniques", "exclusions": [], "hold_constant": [],
        "breakdown": {"property": "device_type", "attribution": "first_touch", "limit": 10},
        "from": "2026-01-01", "to": "2026-01-31",
    }  # fmt: skip
    # What was saved is a funnel the engine runs as it is.
    assert store.run({"kind": "funnel", "source": "Shop", **saved.definition}).to_dict()["window_seconds"] == 172800
    store.save_funnel(shop, "Store", {"template": "store"})
    assert [f.name for f in store.saved_funnels(shop)] == ["Store", "سلة إلى طلب"]
    assert [s["event"] for s in store.saved_funnel(shop, "Store").definition["steps"]] == [
        "Product Viewed", "Product Added", "Checkout Started", "Payment Info Entered", "Order Completed"]  # fmt: skip
    assert store.saved_funnel(shop, "Store").saved_by is None

    time.sleep(0.01)
    replaced = store.save_funnel(shop, "سلة إلى طلب", {**CART, "order": "strict"})
    assert replaced.updated_at > saved.updated_at and replaced.saved_by is None
    assert store.saved_funnel(shop, "سلة إلى طلب").definition["order"] == "strict"
    assert len(store.saved_funnels(shop)) == 2  # replaced, not added
    assert store.saved_funnels(store.source("Other")) == []  # one namespace per source

    store.close()
    reopened = masar.open(tmp_path / "data")
    try:
        shop = reopened.source("Shop")
        again = reopened.saved_funnel(shop, "سلة إلى طلب")
        assert again.definition == replaced.definition and again.updated_at == replaced.updated_at
        assert again.to_dict()["updated_at"].endswith("+00:00")
        reopened.delete_saved_funnel(shop, "Store")
        assert [f.name for f in reopened.saved_funnels(shop)] == ["سلة إلى طلب"]
        with pytest.raises(NotFound, match="no saved funnel named 'Store'"):
            reopened.saved_funnel(shop, "Store")
        with pytest.raises(NotFound):
            reopened.delete_saved_funnel(shop, "Store")
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("name", "definition", "message"),
    [
        ("", CART, "1 to 200 characters"),
        ("x" * 201, CART, "1 to 200 characters"),
        ("two\nlines", CART, "control characters"),
        (42, CART, "is text"),
        ("One step", {"steps": ["Product Viewed"]}, "steps"),
        ("Bad window", {**CART, "window": "soon"}, "not a duration"),
        ("Unknown field", {**CART, "colour": "red"}, "colour"),
        ("Both", {"steps": ["A", "B"], "template": "store"}, "either steps or a template"),
        ("No such template", {"template": "nope"}, "no funnel template named 'nope'"),
        ("Not an object", ["A", "B"], "JSON object"),
    ],
)
def test_bad_names_and_definitions_are_refused_and_nothing_is_saved(store, name, definition, message):
    shop = store.source("Shop")
    with pytest.raises((InvalidInput, NotFound), match=message):
        store.save_funnel(shop, name, definition)
    assert store.saved_funnels(shop) == []
