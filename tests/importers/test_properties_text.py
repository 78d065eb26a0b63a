"""The properties text of an imported row is hashed into its message id, so the faster builder
(``properties_expr``, string concatenation) must write exactly what DuckDB's ``json_object`` did."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.importers.presets import literal, properties_expr

NUMBER = "'-?(0|[1-9][0-9]{0,14})(\\.[0-9]+)?'"


def reference(columns: dict[str, str]) -> str:
    """The old expression: ``json_object`` over each value's JSON, numeric text as a number."""

    def value(name: str, type_name: str) -> str:
        c = '"' + name.replace('"', '""') + '"'
        if type_name == "VARCHAR":
            return f"CASE WHEN {c} IS NULL THEN NULL WHEN regexp_full_match({c}, {NUMBER}) THEN CAST({c} AS JSON) ELSE to_json({c}) END"
        return f"to_json({c})"

    pairs = ", ".join(f"{literal(n)}, {value(n, t)}" for n, t in columns.items())
    return f"CAST(json_object({pairs}) AS VARCHAR)"


def both(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    columns = {name: type_name for name, type_name, *_ in con.execute(f"DESCRIBE {table}").fetchall()}
    return con.execute(f"SELECT {reference(columns)}, {properties_expr(columns, list(columns))} FROM {table}").fetchall()


def test_every_kind_of_column_gives_the_same_text() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        """CREATE TABLE t AS SELECT * FROM (VALUES
            ('12.50', 1, 2.5::DOUBLE, 3.125::DECIMAL(18, 3), true, DATE '2026-01-02',
             TIMESTAMPTZ '2026-01-02 03:04:05.123456+00', [1, 2], {'a': 'x', 'b': NULL}, 'red', 'مسار "quoted"\\ tab\t'),
            (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ('-0', -7, 1e300, -0.001, false, DATE '1970-01-01', TIMESTAMPTZ '1970-01-01 00:00:00+00', [], {'a': NULL, 'b': 2},
             '007', '1.'),
            ('123456789012345', 0, -0.0, 0, NULL, NULL, NULL, [NULL], NULL, '1234567890123456', ' 5'),
            ('3.14159265358979323846264338327950288', 9223372036854775807, 0.1, 999999999999999.999, true,
             DATE '2026-12-31', NULL, NULL, NULL, 'نعم', E'\\x01control')
        ) AS v("price", "count", "ratio", "amount", "flag", "day", "at", "list", "struct", "variant", "key ""odd"" , name")"""
    )
    con.execute(
        """CREATE TABLE u AS SELECT * FROM (VALUES
            (0.1::FLOAT, 170141183460469231731687303715884105727::HUGEINT, 18446744073709551615::UBIGINT,
             TIME '01:02:03', TIMESTAMP '2026-01-02 03:04:05', 7::SMALLINT, -3::TINYINT, 1.5::DECIMAL(4, 1), 'nan'::DOUBLE),
            (NULL, -5::HUGEINT, 0::UBIGINT, NULL, NULL, NULL, NULL, NULL, '-inf'::DOUBLE)
        ) AS v(f, h, ub, tm, naive, s, ti, small_decimal, d)"""
    )
    rows = both(con, "t") + both(con, "u")
    assert len(rows) == 7
    for old, new in rows:
        assert new == old


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12), st.from_regex(r"-?(0|[1-9][0-9]{0,16})(\.[0-9]{0,4})?", fullmatch=True)), min_size=1, max_size=20))
def test_text_values_give_the_same_text(values: list[str | None]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v VARCHAR, w VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(v, v[::-1] if v else v) for v in values])
    for old, new in both(con, "t"):
        assert new == old

