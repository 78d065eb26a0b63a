"""Audiences, the customer profile and journeys (paths) on ClickHouse equal the embedded store's:
the same stores twinned into chdb (tests/clickhouse/twins.py), every query run by both, results
compared whole (``to_dict()``)."""

from __future__ import annotations

import pytest

from masar.engine import parse_query
from masar.errors import InvalidInput
from masar.store.clickhouse.paths import run_paths
from tests.clickhouse.twins import twin
from tests.engine.test_paths import SHOP, _store


@pytest.fixture(scope="module")
def shop(tmp_path_factory, chdb_client):
    store = _store(tmp_path_factory.mktemp("shop"), SHOP)
    yield store, twin(store, chdb_client)
    store.close()


SHOP_PATHS = [
    {"step": "Product Viewed", "label": "path", "cleaning": [{"pattern": "^/products/", "alias": "Product page"}]},
    {"step": "Product Viewed", "label": "url", "collapse_repeats": False, "length": 4},
    {"step": "Product Viewed", "length": 3, "collapse_repeats": False},
    {"step": "Order Completed", "direction": "before", "length": 3, "exclude_events": ["Page Viewed"]},
    {"step": "Product Viewed", "window": "3d"},
    {"step": "Product Viewed", "window": "session"},
    {"step": "Cart Viewed", "occurrence": "every", "length": 2},
    {"length": 2, "from": "2026-03-02", "to": "2026-03-02"},
    {"length": 2, "from": "2026-03-03"},
    {"step": "Product Viewed", "node_limit": 3, "edge_limit": 2, "limit": 1},
    {"step": "Nothing Like It"},
]


@pytest.mark.parametrize("query", SHOP_PATHS, ids=range(len(SHOP_PATHS)))
def test_shop_paths(shop, query):
    store, context = shop
    q = {"kind": "paths", "source": "Shop", **query}
    assert run_paths(context("Shop"), parse_query(q)).to_dict() == store.run(q, reuse=False).to_dict()
