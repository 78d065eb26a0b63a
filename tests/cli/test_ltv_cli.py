"""``masar ltv`` end to end: ``fit`` on the CDNOW sample imported as orders through the real
importer reproduces the published BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma fits;
``predict`` and ``historical`` print the ``ltv`` query's JSON, export readable files and fail
with one sentence."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

import masar
from tests.conftest import masar_cli, masar_cli_json
from tests.engine.sales_fixtures import hand_store, ltv_store


def _cdnow_rows():
    path = next(f for f in importlib.metadata.files("Lifetimes") if f.name == "CDNOW_sample.txt").locate()
    for n, line in enumerate(open(path).read().split("\n")):
        fields = line.split()
        if fields:
            _, customer, day, _, dollars = fields
            yield {
                "order_id": f"o{n}",
                "customer_id": f"c{customer}",
                "created_at": f"{day[:4]}-{day[4:6]}-{day[6:]}T12:00:00Z",
                "total": dollars,
                "currency": "USD",
            }


def test_ltv_fit_reproduces_cdnow(tmp_path):
    data = tmp_path / "data"
    orders = tmp_path / "cdnow.csv"
    with orders.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["order_id", "customer_id", "created_at", "total", "currency"]
        )
        writer.writeheader()
        writer.writerows(_cdnow_rows())
    masar_cli("sources", "create", "CDNOW", "--currency", "USD", "--data-dir", data)
    imported = masar_cli("import", orders, "--source", "CDNOW", "--preset", "orders", "--data-dir", data)
    assert imported.returncode == 0, imported.stderr
    fit = masar_cli_json("ltv", "fit", "--source", "CDNOW", "--calibration-end", "1997-09-30", "--unit", "week",
                         "--data-dir", data, "--json")  # fmt: skip
    assert fit["customers"] == 2357
    b, g = fit["bgnbd"], fit["gamma_gamma"]
    assert abs(b["r"] - 0.243) <= 0.0006 and abs(b["alpha"] - 4.414) <= 0.0006
    assert abs(b["a"] - 0.793) <= 0.0006 and abs(b["b"] - 2.426) <= 0.0006
    assert abs(b["log_likelihood"] - (-9582.4)) <= 0.05
    assert abs(g["p"] - 6.25) <= 0.006 and abs(g["q"] - 3.74) <= 0.006 and abs(g["gamma"] - 15.44) <= 0.006


# -- masar ltv predict / historical -----------------------------------------------------------------

LTV_GROUPS = ["first_channel", "customers", "expected_active", "mean_p_alive", "expected_purchases",
              "predicted_value", "mean_predicted_value"]  # fmt: skip


@pytest.fixture(scope="module")
def returning(tmp_path_factory) -> Path:
    """The store of 40 returning customers of tests/engine/sales_fixtures.py; its data directory."""
    directory = tmp_path_factory.mktemp("returning")
    ltv_store(directory).close()
    return directory / "data"


def test_ltv_predict_json_is_the_query_result(returning):
    out = masar_cli_json("ltv", "predict", "--source", "S", "--by", "channel", "--limit", "5", "--data-dir", returning)
    assert (out["kind"], out["mode"], out["currency"], out["as_of"]) == ("ltv", "predicted", "SAR", "2025-12-31")
    assert (out["horizon_days"], out["customers"], out["total"], out["group_by"]) == (365, 40, 40, "first_channel")
    assert set(out["fit"]) == {"bgnbd", "gamma_gamma", "customers"}
    assert [list(g) for g in out["groups"]] == [LTV_GROUPS] * 4
    assert sum(g["predicted_value"] for g in out["groups"]) == pytest.approx(out["predicted_value"], rel=1e-12)
    assert [list(row)[:4] for row in out["rows"]] == [["person", "user_id", "email", "first_channel"]] * 5
    assert out["rows"][0]["predicted_value"] >= out["rows"][-1]["predicted_value"]
    store = masar.open(returning)
    try:
        direct = store.run({"kind": "ltv", "source": "S", "group_by": "first_channel", "limit": 5, "horizon_days": 365,
                            "unit": "week", "discount_rate": 0.0}).to_dict()  # fmt: skip
    finally:
        store.close()
    assert out == json.loads(json.dumps(direct))


def test_ltv_predict_exports(returning, tmp_path):
    by_channel = tmp_path / "by-channel.xlsx"
    out = masar_cli_json("ltv", "predict", "--source", "S", "--by", "channel", "--export", by_channel,
                         "--data-dir", returning)  # fmt: skip
    sheet = openpyxl.load_workbook(by_channel).active
    header, *rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert header == LTV_GROUPS and len(rows) == 4
    assert sum(row[header.index("predicted_value")] for row in rows) == pytest.approx(out["predicted_value"])
    everyone = tmp_path / "customers.csv"
    out = masar_cli_json("ltv", "predict", "--source", "S", "--export", everyone, "--data-dir", returning)
    with everyone.open() as handle:
        customers = list(csv.DictReader(handle))
    assert len(customers) == 40 == len(out["rows"])  # --export lists every customer, not --limit's
    assert [c["person"] for c in customers] == [str(row["person"]) for row in out["rows"]]
    assert sum(float(c["predicted_value"]) for c in customers) == pytest.approx(out["predicted_value"])


def test_ltv_historical_json_and_exports(returning, tmp_path):
    cohorts = tmp_path / "cohorts.csv"
    out = masar_cli_json("ltv", "historical", "--source", "S", "--by", "cohort", "--export", cohorts,
                         "--data-dir", returning)  # fmt: skip
    assert (out["mode"], out["group_by"], out["customers"]) == ("historical", "cohort_month", 40)
    assert [g["cohort_month"] for g in out["groups"]] == ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05",
                                                           "2025-06"]  # fmt: skip
    with cohorts.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cohort_month"] for r in rows] == [g["cohort_month"] for g in out["groups"]]
    assert sum(Decimal(r["net_revenue"]) for r in rows) == Decimal(out["net_revenue"])
    everyone = tmp_path / "customers.xlsx"
    masar_cli("ltv", "historical", "--source", "S", "--export", everyone, "--data-dir", returning)
    header, *rows = [list(row) for row in openpyxl.load_workbook(everyone).active.iter_rows(values_only=True)]
    assert header[:3] == ["person", "user_id", "email"] and len(rows) == 40
    assert sum(row[header.index("net_revenue")] for row in rows) == pytest.approx(float(out["net_revenue"]))
    one = masar_cli_json("ltv", "historical", "--source", "S", "--customer", "c4", "--data-dir", returning)
    assert [row["user_id"] for row in one["rows"]] == ["c4"]
    table = masar_cli("ltv", "historical", "--source", "S", "--by", "segment", "--data-dir", returning).stdout
    assert "40 customers to 2025-12-31" in table and "by rfm_segment" in table


def test_ltv_errors_are_one_sentence(tmp_path):
    hand_store(tmp_path).close()  # 9 customers: too few to fit
    data = tmp_path / "data"
    for args, message in (
        (("predict",), "The BG/NBD model needs at least 10 customers to fit, got 9."),
        (("predict", "--by", "country"), "--by must be one of cohort, channel, segment, got 'country'"),
        (("historical", "--customer", "nobody"), "user 'nobody' has no order on or before 2026-04-01"),
        (("historical", "--export", tmp_path / "out.pdf"), "cannot export to out.pdf: use a .csv or .xlsx file name"),
    ):
        done = subprocess.run([sys.executable, "-m", "masar.cli", "ltv", *map(str, args), "--source", "S",
                               "--data-dir", str(data)], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 1, done.stdout
        assert done.stderr == f"error: {message}\n"
