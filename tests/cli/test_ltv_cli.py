"""``masar ltv fit`` end to end: the CDNOW sample imported as orders through the real importer
reproduces the published BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma fits."""

from __future__ import annotations

import csv
import importlib.metadata

from tests.conftest import masar_cli, masar_cli_json


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
