"""The CLI contract: --data-dir and --json everywhere, one clear sentence on errors."""

from __future__ import annotations

import json
import subprocess
import sys


def masar(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "masar.cli", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_sources_keys_events(tmp_path):
    d = str(tmp_path / "data")
    created = json.loads(masar("sources", "create", "My Store", "--currency", "SAR", "--data-dir", d, "--json").stdout)
    assert set(created) == {"id", "name", "write_key"} and created["name"] == "My Store"
    listed = json.loads(masar("sources", "list", "--data-dir", d, "--json").stdout)
    assert listed[0]["write_key"] == created["write_key"] and listed[0]["events"] == 0
    key = json.loads(masar("keys", "create", "--source", "My Store", "--data-dir", d, "--json").stdout)
    assert key["key"].startswith("msk_")
    assert json.loads(masar("events", "count", "--source", "My Store", "--data-dir", d, "--json").stdout) == {"count": 0}
    assert json.loads(masar("events", "rejected", "--data-dir", d, "--json").stdout) == []


def test_env_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MASAR_DATA_DIR", str(tmp_path / "env-data"))
    masar("sources", "create", "Env Store")
    assert (tmp_path / "env-data" / "metadata.db").exists()


def test_import_then_count(tmp_path):
    d = str(tmp_path / "data")
    masar("sources", "create", "S", "--data-dir", d)
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("user_id,event,timestamp\nu1,Product Viewed,2026-01-01T00:00:00Z\nu1,Order Completed,"
                        "2026-01-01T00:10:00Z\nu2,Order Completed,bad\n")  # fmt: skip
    report = json.loads(masar("import", str(csv_path), "--source", "S", "--data-dir", d, "--json").stdout)
    assert (report["imported"], report["rejected"]) == (2, 1)
    count = masar("events", "count", "--source", "S", "--event", "Order Completed", "--data-dir", d, "--json")
    assert json.loads(count.stdout) == {"count": 1}
    tail = json.loads(masar("events", "tail", "--source", "S", "--data-dir", d, "--json").stdout)
    assert {row["event"] for row in tail} == {"Product Viewed", "Order Completed"}


def test_errors_are_one_sentence(tmp_path):
    d = str(tmp_path / "data")
    for args in (
        ("events", "count", "--source", "Nope", "--data-dir", d),
        ("import", str(tmp_path / "missing.csv"), "--source", "Nope", "--data-dir", d),
    ):
        result = masar(*args, check=False)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    masar("sources", "create", "Dup", "--data-dir", d)
    dup = masar("sources", "create", "Dup", "--data-dir", d, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr


def test_demo_small(tmp_path):
    d = str(tmp_path / "data")
    report = json.loads(masar("demo", "--no-serve", "--visitors", "300", "--days", "10", "--data-dir", d, "--json").stdout)
    assert report["events"] > 1000 and report["rejected"] == 0
    again = json.loads(masar("demo", "--no-serve", "--visitors", "300", "--days", "10", "--data-dir", d, "--json").stdout)
    assert again["skipped"] is True and again["events"] == report["events"]


def test_channel_rules_per_source(tmp_path):
    d = str(tmp_path / "data")
    masar("sources", "create", "S", "--data-dir", d)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"channel": "Affiliates", "medium": "influencer"}]}))
    shown = json.loads(masar("sources", "rules", "S", "--file", str(rules), "--data-dir", d, "--json").stdout)
    assert shown["rules"][0]["channel"] == "Affiliates"
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("user_id,event,timestamp,utm_source,utm_medium\nu1,Page Viewed,2026-01-01T00:00:00Z,"
                        "instagram,influencer\n")  # fmt: skip
    masar("import", str(csv_path), "--source", "S", "--data-dir", d)
    tail = json.loads(masar("events", "tail", "--source", "S", "--data-dir", d, "--json").stdout)
    assert tail[0]["channel"] == "Affiliates"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"channel": "Nope", "medium": "x"}]}))
    result = masar("sources", "rules", "S", "--file", str(bad), "--data-dir", d, check=False)
    assert result.returncode == 1 and "channel rules" in result.stderr
