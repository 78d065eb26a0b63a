"""Saved audiences in the embedded store's metadata: save, list, read, replace, delete, kept
across reopening, one namespace per source, and clear errors for bad names and definitions."""

from __future__ import annotations

import time

import pytest

import masar
from masar.errors import InvalidInput, NotFound

LAPSED = {"all": [{"type": "lapsed", "factor": 2}]}
CART = {"all": [
    {"type": "did", "event": "Product Added", "within_days": 7},
    {"type": "did_not_since", "event": "Order Completed", "since": {"event": "Product Added"}},
]}  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = masar.open(tmp_path / "data")
    store.create_source("Shop", currency="SAR")
    store.create_source("Other")
    yield store
    store.close()


def test_save_list_read_replace_delete(store, tmp_path):
    shop = store.source("Shop")
    assert store.audiences(shop) == []
    saved = store.save_audience(shop, "Lapsed", LAPSED)
    # Kept as parsed: every default spelt out, so it reads back meaning what it meant.
    assert saved.definition == {"all": [{"type": "lapsed", "factor": 2.0, "min_orders": 2}]}
    store.save_audience(shop, "  سلة متروكة  ", CART)  # Arabic, surrounding spaces dropped
    assert [a.name for a in store.audiences(shop)] == ["Lapsed", "سلة متروكة"]
    cart = store.audience(shop, "سلة متروكة")
    assert cart.definition["all"][0] == {"type": "did", "event": "Product Added", "filters": [], "within_days": 7,
                                         "at_least": 1, "same_value": []}  # fmt: skip
    assert cart.updated_at.tzinfo is not None and cart.to_dict()["name"] == "سلة متروكة"

    time.sleep(0.01)
    replaced = store.save_audience(shop, "Lapsed", {"all": [{"type": "lapsed", "factor": 3}]})
    assert replaced.updated_at > saved.updated_at
    again = store.audience(shop, "Lapsed")
    assert again.definition["all"][0]["factor"] == 3.0 and again.updated_at == replaced.updated_at
    assert len(store.audiences(shop)) == 2  # replaced, not added

    store.close()
    reopened = masar.open(tmp_path / "data")
    try:
        shop = reopened.source("Shop")
        assert [(a.name, a.definition) for a in reopened.audiences(shop)] == [
            ("Lapsed", again.definition), ("سلة متروكة", cart.definition)]  # fmt: skip
        reopened.delete_audience(shop, "Lapsed")
        assert [a.name for a in reopened.audiences(shop)] == ["سلة متروكة"]
        with pytest.raises(NotFound, match="no audience named 'Lapsed'"):
            reopened.audience(shop, "Lapsed")
        with pytest.raises(NotFound) as info:
            reopened.delete_audience(shop, "Lapsed")
        assert info.value.code == "audience_not_found" and info.value.status == 404
    finally:
        reopened.close()


def test_each_source_has_its_own_names(store):
    shop, other = store.source("Shop"), store.source("Other")
    store.save_audience(shop, "Lapsed", LAPSED)
    store.save_audience(other, "Lapsed", CART)
    assert store.audience(shop, "Lapsed").definition["all"][0]["type"] == "lapsed"
    assert store.audience(other, "Lapsed").definition["all"][0]["type"] == "did"
    store.delete_audience(other, "Lapsed")
    assert [a.name for a in store.audiences(shop)] == ["Lapsed"] and store.audiences(other) == []


def test_not_found_names_a_close_match(store):
    shop = store.source("Shop")
    store.save_audience(shop, "Cart abandoners", CART)
    with pytest.raises(NotFound, match="did you mean 'Cart abandoners'"):
        store.audience(shop, "Cart abandoner")
    with pytest.raises(NotFound, match="masar audiences list"):
        store.audience(shop, "Whales")


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "1 to 200 characters, got 0"), ("   ", "1 to 200 characters, got 0"), ("x" * 201, "got 201"),
     ("two\nlines", "control characters"), ("tab\there", "control characters"), (7, "is text")],
)  # fmt: skip
def test_bad_names(store, name, message):
    shop = store.source("Shop")
    with pytest.raises(InvalidInput, match=message):
        store.save_audience(shop, name, LAPSED)
    assert store.audiences(shop) == []


def test_longest_name(store):
    shop = store.source("Shop")
    name = "م" * 200
    assert store.save_audience(shop, name, LAPSED).name == name
    assert store.audience(shop, name).name == name


@pytest.mark.parametrize(
    ("definition", "message"),
    [({"all": [{"type": "did"}]}, "all.0.did.event"), ({"all": []}, "at least 1"),
     ({"all": [{"type": "lapsed", "whithin_days": 3}]}, "whithin_days"), ([], "JSON object")],
)  # fmt: skip
def test_bad_definitions_are_not_saved(store, definition, message):
    shop = store.source("Shop")
    store.save_audience(shop, "Kept", LAPSED)
    with pytest.raises(InvalidInput, match=message):
        store.save_audience(shop, "Kept", definition)
    assert store.audience(shop, "Kept").definition["all"][0]["type"] == "lapsed"  # the old one stays
