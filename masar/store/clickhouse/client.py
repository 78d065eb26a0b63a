"""Talking to ClickHouse: a server or cluster over HTTP (clickhouse-connect), or ClickHouse's engine
in this process (chdb). Both take the same SQL with server-side parameters (``{name:Type}``) and
hand results back as Arrow tables, so nothing above this module knows which one it has.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from masar.errors import MasarError


class ClickHouseUnavailable(MasarError):
    """ClickHouse did not answer (down, unreachable, or refused the statement for that reason)."""

    code = "clickhouse_unavailable"
    status = 503


# Standard SQL semantics where ClickHouse's default differs: an outer join's missing side is NULL
# (not 0 or ''), as in DuckDB.
SETTINGS = {"join_use_nulls": 1}


class Client(Protocol):
    database: str
    cluster: str | None

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table: ...
    def insert(self, table: str, data: pa.Table, *, settings: dict[str, Any] | None = None) -> None: ...
    def insert_parquet(self, table: str, path: Path, *, constants: dict[str, int],
                       settings: dict[str, Any] | None = None) -> None: ...  # fmt: skip
    def close(self) -> None: ...


def parquet_blocks(path: Path, constants: dict[str, int], rows: int = 256 * 1024) -> Iterator[pa.Table]:
    """A Parquet file in blocks of whole row groups, with constant columns put first."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        table = pa.Table.from_batches([batch])
        for i, (name, value) in enumerate(constants.items()):
            table = table.add_column(i, name, pa.array([value] * table.num_rows, pa.uint32()))
        yield table


_counter = itertools.count()


@contextmanager
def scratch_table(client: Client, data: pa.Table, *, prefix: str = "tmp") -> Iterator[str]:
    """A small Arrow table (rates, spend, identity overrides, wanted ids) as a ClickHouse table for
    one query, dropped after. Memory engine: it lives on the node that runs the query."""
    name = f"{client.database}._{prefix}_{uuid.uuid4().hex[:12]}_{next(_counter)}"
    columns = ", ".join(f"`{f.name}` {clickhouse_type(f.type, nullable=f.nullable)}" for f in data.schema)
    client.command(f"CREATE TABLE {name} ({columns}) ENGINE = Memory")
    try:
        if data.num_rows:
            client.insert(name, data)
        yield name
    finally:
        try:
            client.command(f"DROP TABLE IF EXISTS {name}")
        except ClickHouseUnavailable:
            pass


def clickhouse_type(arrow: pa.DataType, *, nullable: bool = True, low_cardinality: bool = False) -> str:
    """The ClickHouse column type that holds an Arrow type without loss."""
    if pa.types.is_timestamp(arrow):
        base = f"DateTime64(6, '{arrow.tz or 'UTC'}')"
    elif pa.types.is_date(arrow):
        base = "Date32"
    elif pa.types.is_decimal(arrow):
        base = f"Decimal({arrow.precision}, {arrow.scale})"
    elif pa.types.is_boolean(arrow):
        base = "Bool"
    elif pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        base = "String"
    elif pa.types.is_integer(arrow):
        base = {8: "Int8", 16: "Int16", 32: "Int32", 64: "Int64"}[arrow.bit_width]
        if pa.types.is_unsigned_integer(arrow):
            base = "U" + base
    elif pa.types.is_floating(arrow):
        base = "Float64" if arrow.bit_width == 64 else "Float32"
    else:
        raise TypeError(f"no ClickHouse type for {arrow}")
    if nullable:
        base = f"Nullable({base})"
    if low_cardinality:
        base = f"LowCardinality({base})"
    return base


def _unavailable(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in ("Connection refused", "timed out", "Max retries", "NETWORK_ERROR", "SOCKET_TIMEOUT",
                       "Name or service not known", "ConnectionError")  # fmt: skip
    )


class HttpClient:
    """A ClickHouse server or cluster over HTTP (clickhouse-connect)."""

    def __init__(self, *, host: str, port: int, username: str, password: str, database: str,
                 secure: bool = False, cluster: str | None = None):  # fmt: skip
        self.database = database
        self.cluster = cluster
        self._where = f"{host}:{port}"
        self._options = {"host": host, "port": port, "username": username, "password": password, "secure": secure}
        self._lock = threading.Lock()
        self._client: Any = None

    def _connected(self) -> Any:
        """Connected on first use, so a server (and its capture) starts while ClickHouse is down."""
        with self._lock:
            if self._client is None:
                import clickhouse_connect

                try:
                    self._client = clickhouse_connect.get_client(
                        **self._options,
                        # the database may not exist yet (``masar store init`` creates it)
                        database="default", settings={"date_time_input_format": "best_effort", **SETTINGS},
                    )  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - clickhouse-connect raises several kinds
                    raise ClickHouseUnavailable(f"ClickHouse at {self._where} did not answer: {exc}") from None
            return self._client

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        client = self._connected()
        try:
            client.command(sql, parameters=params or None)
        except Exception as exc:
            if _unavailable(exc):
                raise ClickHouseUnavailable(f"ClickHouse did not answer: {exc}") from None
            raise

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        client = self._connected()
        try:
            return client.query_arrow(sql, parameters=params or None, use_strings=True)
        except Exception as exc:
            if _unavailable(exc):
                raise ClickHouseUnavailable(f"ClickHouse did not answer: {exc}") from None
            raise

    def insert(self, table: str, data: pa.Table, *, settings: dict[str, Any] | None = None) -> None:
        client = self._connected()
        try:
            client.insert_arrow(table, data, settings=settings)
        except Exception as exc:
            if _unavailable(exc):
                raise ClickHouseUnavailable(f"ClickHouse did not answer: {exc}") from None
            raise

    def insert_parquet(self, table: str, path: Path, *, constants: dict[str, int],
                       settings: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Streamed to the server in blocks (the file is on this machine, not the server's)."""
        for block, data in enumerate(parquet_blocks(path, constants)):
            token = settings.get("insert_deduplication_token") if settings else None
            self.insert(table, data, settings={**(settings or {}),
                                               **({"insert_deduplication_token": f"{token}:{block}"} if token else {})})  # fmt: skip

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# chdb runs one ClickHouse engine per process, on one data path: every store opened on that path
# shares it, and a second path in the same process is refused with a clear error.
_CHDB: dict[str, Any] = {}
_CHDB_LOCK = threading.Lock()


class ChdbClient:
    """ClickHouse's engine in this process (chdb), on a data directory."""

    def __init__(self, path: Path, *, database: str):
        import chdb

        self.database = database
        self.cluster = None
        self.path = str(path.resolve())
        self._fault: str | None = None  # tests: "down" makes every call fail as an outage would
        with _CHDB_LOCK:
            connection = _CHDB.get("connection")
            if connection is None:
                path.mkdir(parents=True, exist_ok=True)
                connection = chdb.connect(self.path)
                for name, value in SETTINGS.items():
                    connection.query(f"SET {name} = {_setting(value)}")
                _CHDB.update(connection=connection, path=self.path, lock=threading.Lock())
            elif _CHDB["path"] != self.path:
                raise MasarError(
                    f"this process already runs chdb on {_CHDB['path']}; chdb takes one data directory "
                    f"per process, so {self.path} needs another process",
                    code="chdb_path_in_use",
                )
        self._connection = connection
        self._lock = _CHDB["lock"]  # chdb's connection is not safe from several threads at once

    def fail(self, fault: str | None) -> None:
        """Make ClickHouse "down" (every call fails) or bring it back: the outage tests."""
        self._fault = fault

    def _check(self) -> None:
        if self._fault:
            raise ClickHouseUnavailable(f"ClickHouse did not answer: {self._fault}")

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._check()
        with self._lock:
            self._connection.query(sql, "CSV", params=_params(params))

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        self._check()
        with self._lock:
            result = self._connection.query(sql, "ArrowTable", params=_params(params))
        return result

    def insert(self, table: str, data: pa.Table, *, settings: dict[str, Any] | None = None) -> None:
        self._check()
        clause = ""
        if settings:
            clause = " SETTINGS " + ", ".join(f"{k} = {_setting(v)}" for k, v in settings.items())
        # chdb reads the Arrow table in place through its Python() table function, which finds it
        # by its variable name in this frame.
        names = ", ".join(f"`{n}`" for n in data.schema.names)
        masar_rows = data  # noqa: F841 - read by name by the SQL below
        with self._lock:
            self._connection.query(f"INSERT INTO {table} ({names}){clause} SELECT {names} FROM Python(masar_rows)", "CSV")

    def insert_parquet(self, table: str, path: Path, *, constants: dict[str, int],
                       settings: dict[str, Any] | None = None) -> None:  # fmt: skip
        """ClickHouse reads the file itself (twice as fast as handing it Arrow); columns the file
        lacks (written by an older version) take their defaults."""
        import pyarrow.parquet as pq

        present = ", ".join(f"`{n}`" for n in pq.read_schema(path).names)
        names = ", ".join([*(f"`{n}`" for n in constants), present])
        values = ", ".join([*(str(int(v)) for v in constants.values()), present])
        clause = ""
        if settings:
            clause = " SETTINGS " + ", ".join(f"{k} = {_setting(v)}" for k, v in settings.items())
        self.command(f"INSERT INTO {table} ({names}){clause} SELECT {values} FROM file({_literal(str(path))}, Parquet)")

    def close(self) -> None:
        """The engine stays up for the process (chdb cannot reopen on another path anyway)."""


def _params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """chdb passes parameter values as text, which ClickHouse parses as in TSV: text escaped (what
    clickhouse-connect does for the HTTP client), so a backslash, a quote or a line break reaches
    the query as given (a regular expression's ``\\d`` stays ``\\d``); arrays spelled as literals."""
    if not params:
        return None
    return {k: _literal(v) if isinstance(v, list | tuple) else _escape(v) if isinstance(v, str) else v
            for k, v in params.items()}  # fmt: skip


_MUST_ESCAPE = ("\\", "'", "`", "\t", "\n")


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _MUST_ESCAPE else c for c in text)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

