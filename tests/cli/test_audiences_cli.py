"""``masar audiences ...`` and ``masar customer`` on a real store: the JSON is the query's, the
exports are the members, the tables are readable, and mistakes are one sentence on stderr."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from masar.engine.audience_examples import EXAMPLES, example_definition
from tests.conftest import REPO, masar_cli, masar_cli_json
from tests.engine.customer_stores import random_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shop")
    random_store(directory, 1).close()
    return directory / "data"


def _fails(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "masar.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_save_list_show_members_delete(data, tmp_path):
    d = ("--source", "S", "--data-dir", data)
    examples = masar_cli_json("audiences", "examples")
    assert [e["key"] for e in examples] == list(EXAMPLES)

    saved = masar_cli_json("audiences", "save", "Shoes, not bags", *d, "--example", "bought_not_bought",
                           "--set", "bought=Shoes", "--set", "never=Bags")  # fmt: skip
    assert saved["definition"] == example_definition("bought_not_bought", bought="Shoes", never="Bags")
    definition = tmp_path / "cart.json"
    definition.write_text(json.dumps(example_definition("cart_abandoners", days=30)))
    masar_cli("audiences", "save", "عربة متروكة", *d, "--file", definition)
    top = {"all": [{"type": "top_percent", "percent": 50}]}
    masar_cli("audiences", "save", "Top half", *d, "--definition", json.dumps(top))

    listed = masar_cli_json("audiences", "list", *d)
    assert [a["name"] for a in listed] == ["Shoes, not bags", "Top half", "عربة متروكة"]
    counts = {a["name"]: a["count"] for a in listed}
    assert counts["Shoes, not bags"] == saved["count"] and all(counts.values())

    shown = masar_cli_json("audiences", "show", "Top half", *d)
    assert shown["definition"] == {"all": [{"type": "top_percent", "percent": 50, "by": "revenue"}]}
    assert shown["count"] == counts["Top half"]

    # The members' JSON is the query's; --limit/--offset page it; --export writes every member.
    members = masar_cli_json("audiences", "members", "Top half", *d, "--limit", "1000")
    assert members["kind"] == "audience" and members["name"] == "Top half"
    assert members["count"] == len(members["members"]) == counts["Top half"]
    page = masar_cli_json("audiences", "members", "Top half", *d, "--limit", "2", "--offset", "1")
    assert page["members"] == members["members"][1:3] and page["count"] == members["count"]
    masar_cli("audiences", "members", "Top half", *d, "--export", tmp_path / "top.csv")
    with (tmp_path / "top.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["person"]), Decimal(r["revenue"])) for r in rows] == [
        (m["person"], Decimal(m["revenue"])) for m in members["members"]]  # fmt: skip
    masar_cli("audiences", "members", "Top half", *d, "--export", tmp_path / "top.xlsx")
    sheet = list(load_workbook(tmp_path / "top.xlsx", read_only=True).active.values)
    assert [row[0] for row in sheet[1:]] == [m["person"] for m in members["members"]]
    table = masar_cli("audiences", "members", "Top half", *d, "--limit", "3").stdout
    assert f"Top half: {members['count']} members" in table and "… " in table

    masar_cli("audiences", "delete", "عربة متروكة", *d)
    assert [a["name"] for a in masar_cli_json("audiences", "list", *d)] == ["Shoes, not bags", "Top half"]
    assert "Top half" in masar_cli("audiences", "list", *d).stdout


def test_customer(data):
    d = ("--source", "S", "--data-dir", data)
    customers = masar_cli_json("rfm", "--customers", "--limit", "1000", *d)["customers"]
    best = customers[0]
    by_email = masar_cli_json("customer", best["email"].upper(), *d, "--timeline", "5")
    by_id = masar_cli_json("customer", str(best["person"]), *d, "--by", "person", "--timeline", "5")
    assert by_email == by_id and by_email["person"] == best["person"]
    assert by_email["rfm"]["segment"] == best["segment"] and by_email["rfm"]["monetary"] == best["monetary"]
    assert len(by_email["timeline"]) == 5
    shown = masar_cli("customer", best["user_id"], *d, "--no-predict").stdout
    assert f"Person {best['person']}" in shown and best["segment"] in shown
    assert "lifetime value" in shown and "latest 20 of" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("audiences", "show", "Nobody"), "has no audience named 'Nobody'"),
        (("audiences", "members", "Nobody"), "has no audience named 'Nobody'"),
        (("audiences", "delete", "Nobody"), "has no audience named 'Nobody'"),
        (("audiences", "save", "X", "--example", "whales"), "no example named 'whales'"),
        (("audiences", "save", "X", "--example", "bought_not_bought"), "needs bought=CATEGORY"),
        (("audiences", "save", "X", "--example", "lapsed", "--set", "factor"), "use NAME=VALUE"),
        (("audiences", "save", "X"), "give the audience as one of --example"),
        (("audiences", "save", "X", "--definition", "{nope"), "--definition is not valid JSON"),
        (("audiences", "save", "X", "--definition", '{"all": [{"type": "did"}]}'), "invalid audience: all.0"),
        (("audiences", "save", " ", "--example", "lapsed"), "1 to 200 characters"),
        (("customer", "nobody@example.com"), "no person of 'S' has"),
        (("customer", "c1", "--by", "phone"), "by"),
    ],
)
def test_mistakes_are_one_sentence(data, args, message):
    assert message in _fails(*args, "--source", "S", "--data-dir", data)


def test_errors_quoting_json_keep_their_brackets(data, tmp_path):
    definition = tmp_path / "list.json"
    definition.write_text("[]")
    message = _fails("audiences", "save", "X", "--file", definition, "--source", "S", "--data-dir", data)
    assert 'an audience is a JSON object {"all": [conditions...]}, got list' in message
