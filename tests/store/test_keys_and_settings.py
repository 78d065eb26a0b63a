"""What the settings page and the CLI change in the store: secret keys listed and revoked, sources
checked (name, currency, time zone) with stable error codes, monthly targets checked."""

from __future__ import annotations

from decimal import Decimal

import pytest

import masar
from masar.errors import Conflict, InvalidInput, NotFound
from tests.conftest import masar_cli, masar_cli_json


@pytest.fixture
def store(tmp_path):
    s = masar.open(tmp_path / "data")
    yield s
    s.close()


def test_keys_are_listed_without_their_secrets_and_revoked_for_good(store):
    shop = store.create_source("Shop")
    everywhere, secret = store.create_api_key(source=None, name="reports")
    scoped, scoped_secret = store.create_api_key(source="Shop", name="shop only")
    listed = store.api_keys()
    assert [(k.id, k.name, k.source_id) for k in listed] == [(everywhere.id, "reports", None), (scoped.id, "shop only", shop.id)]
    assert all(k.created_at is not None and k.created_at.tzinfo and k.revoked_at is None for k in listed)
    assert secret.startswith(listed[0].prefix) and secret not in repr(listed)
    revoked = store.revoke_api_key(everywhere.id)
    assert revoked.revoked_at is not None and store.verify_api_key(secret) is None
    assert store.revoke_api_key(everywhere.id).revoked_at == revoked.revoked_at  # again: no change
    assert store.verify_api_key(scoped_secret) is not None
    with pytest.raises(NotFound) as missing:
        store.revoke_api_key(999)
    assert missing.value.code == "unknown_key"


def test_sources_are_checked_with_stable_codes(store):
    for kwargs, code in (
        ({"name": "  "}, "invalid_name"),
        ({"name": "x" * 201}, "invalid_name"),
        ({"name": "A", "currency": "riyal"}, "invalid_currency"),
        ({"name": "A", "timezone": "Asia/Nowhere"}, "invalid_timezone"),
        ({"name": "A", "timezone": "../../etc/passwd"}, "invalid_timezone"),
    ):
        with pytest.raises(InvalidInput) as wrong:
            store.create_source(**kwargs)
        assert wrong.value.code == code, kwargs
    store.create_source("متجر", timezone=" Asia/Riyadh ")
    assert store.source("متجر").timezone == "Asia/Riyadh"
    with pytest.raises(Conflict) as twice:
        store.create_source("متجر")
    assert twice.value.code == "source_exists"


def test_targets_are_checked(store):
    shop = store.create_source("Shop")
    for month, revenue, orders, code in (
        ("2026-13", Decimal(1), None, "invalid_month"),
        ("26-01", Decimal(1), None, "invalid_month"),
        ("2026-01", Decimal(0), None, "invalid_revenue"),
        ("2026-01", Decimal("NaN"), None, "invalid_revenue"),
        ("2026-01", None, -3, "invalid_orders"),
    ):
        with pytest.raises(InvalidInput) as wrong:
            store.set_target(shop, month, revenue=revenue, orders=orders)
        assert wrong.value.code == code
    store.set_target(shop, "2026-01", revenue=Decimal("1000.5"), orders=None)
    assert store.targets(shop) == [{"month": "2026-01", "revenue": Decimal("1000.5"), "orders": None}]
    store.set_target(shop, "2026-01", revenue=None, orders=None)
    assert store.targets(shop) == []


def test_the_cli_lists_and_revokes_keys(tmp_path):
    data = tmp_path / "data"
    masar_cli("sources", "create", "Shop", "--data-dir", data)
    made = masar_cli_json("keys", "create", "--source", "Shop", "--name", "ci", "--data-dir", data)
    [listed] = masar_cli_json("keys", "list", "--data-dir", data)
    assert listed["source"] == "Shop" and made["key"].startswith(listed["prefix"]) and listed["revoked_at"] is None
    assert "Revoked key" in masar_cli("keys", "revoke", str(listed["id"]), "--data-dir", data).stdout
    assert masar_cli_json("keys", "list", "--data-dir", data)[0]["revoked_at"] is not None
