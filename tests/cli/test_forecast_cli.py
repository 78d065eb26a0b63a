"""``masar forecast`` and ``masar targets show`` on the hand store (tests/engine/sales_fixtures.py):
the JSON is the query's, tables print, exports write, and mistakes are one sentence on stderr."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import masar
from tests.conftest import REPO, masar_cli, masar_cli_json
from tests.engine.sales_fixtures import hand_store


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("hand")
    hand_store(directory).close()
    data = directory / "data"
    masar_cli("targets", "set", "--source", "S", "--month", "2026-03", "--revenue", "2,000", "--orders", "20",
              "--data-dir", data)  # fmt: skip
    yield data


def test_targets_show(data_dir, tmp_path):
    shown = masar_cli_json("targets", "show", "--source", "S", "--as-of", "2026-03-15", "--data-dir", data_dir)
    assert set(shown) == {"currency", "as_of", "level", "months"}
    (march,) = shown["months"]
    assert set(march) == {"month", "from", "to", "status", "days", "elapsed_days", "remaining_days", "revenue",
                          "orders"}  # fmt: skip
    assert set(march["revenue"]) == {"target", "actual", "attainment", "projected", "projected_attainment",
                                     "on_track", "straight_line", "required_daily", "expected_daily", "note"}  # fmt: skip
    assert (march["revenue"]["target"], march["revenue"]["actual"], march["orders"]["actual"]) == ("2000.00", "700.03", 7)
    assert set(march["revenue"]["projected"]) == {"value", "lower", "upper"}

    store = masar.open(data_dir)
    try:
        direct = store.run({"kind": "targets", "source": "S", "as_of": "2026-03-15"}).to_dict()
    finally:
        store.close()
    assert shown == json.loads(json.dumps(direct))

    export = tmp_path / "targets.csv"
    printed = masar_cli("targets", "show", "--source", "S", "--as-of", "2026-03-15", "--export", export,
                        "--data-dir", data_dir).stdout  # fmt: skip
    assert "Net revenue (SAR) targets as of 2026-03-15" in printed and "35.0%" in printed
    (row,) = list(csv.DictReader(export.open()))
    assert (row["month"], row["revenue_actual"], row["orders_actual"]) == ("2026-03", "700.03", "7")


def test_forecast(data_dir, tmp_path):
    result = masar_cli_json("forecast", "--source", "S", "--horizon", "90", "--data-dir", data_dir)
    assert {"measure", "metric", "unit", "currency", "history", "model", "level", "history_days", "points",
            "total", "backtest"} <= set(result)  # fmt: skip
    assert (result["metric"], result["unit"], result["level"]) == ("net_revenue", "money", 0.9)
    assert len(result["points"]) == 90 and result["points"][0]["day"] == "2026-04-02"
    assert set(result["points"][0]) == {"day", "value", "lower", "upper"}
    assert (result["history"]["from"], result["history"]["to"]) == ("2026-01-30", "2026-04-01")
    # 62 days of history leave no 90-day fold.
    assert result["backtest"]["folds"] == [] and result["backtest"]["mae"] is None

    export = tmp_path / "orders.csv"
    printed = masar_cli("forecast", "--source", "S", "--measure", "orders", "--horizon", "30", "--export", export,
                        "--data-dir", data_dir).stdout  # fmt: skip
    assert "Orders forecast" in printed and "Backtest (1 fold of 30 days)" in printed
    rows = list(csv.DictReader(export.open()))
    assert len(rows) == 62 + 30 and rows[0]["day"] == "2026-01-30" and rows[-1]["day"] == "2026-05-01"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("targets", "show", "--source", "S", "--month", "2026-13"), "a month is written YYYY-MM, got '2026-13'"),
        (("forecast", "--source", "Nope"), "no source named 'Nope'"),
        (("forecast", "--source", "S", "--horizon", "0"), "horizon"),
        (("forecast", "--source", "S", "--measure", "profit"), "measure"),
        (("targets", "set", "--source", "S", "--month", "2026-05", "--orders", "0"), "--orders must be a positive"),
    ],
)
def test_mistakes_are_one_sentence(data_dir, args, fragment):
    done = subprocess.run([sys.executable, "-m", "masar.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert fragment in done.stderr
