"""Which store to open: ``--store URL`` / ``MASAR_STORE``.

* nothing, ``embedded`` or ``embedded://DIR``: the embedded store (DuckDB over Parquet) in the data
  directory (``--data-dir`` / ``MASAR_DATA_DIR``, or DIR);
* ``chdb://DIR``: ClickHouse's engine in this process, its data in DIR;
* ``clickhouse://user:password@host:8123/database``: a ClickHouse server or cluster over HTTP
  (``clickhouse+https://`` for TLS; ``?cluster=NAME`` for a cluster's ON CLUSTER DDL).

ClickHouse stores keep metadata (sources, keys, users, rates, identities) and the capture
write-ahead log in the local data directory, as the embedded store does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from masar.errors import InvalidInput

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class StoreUrl:
    kind: str  # "embedded", "chdb" or "clickhouse"
    path: Path | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    database: str = "masar"
    secure: bool = False
    cluster: str | None = None

    def redacted(self) -> str:
        """The URL as it may be shown: no password."""
        if self.kind == "embedded":
            return f"embedded://{self.path}" if self.path else "embedded"
        if self.kind == "chdb":
            return f"chdb://{self.path}" + (f"?database={self.database}" if self.database != "masar" else "")
        scheme = "clickhouse+https" if self.secure else "clickhouse"
        cluster = f"?cluster={self.cluster}" if self.cluster else ""
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}{cluster}"


def _name(value: str, what: str) -> str:
    if not value or not set(value) <= _NAME_OK or value[0].isdigit():
        raise InvalidInput(f"{value!r} is not a valid {what} name (letters, digits and _)", code="invalid_store_url")
    return value


def parse_store_url(text: str | None) -> StoreUrl:
    text = (text or "").strip()
    if text in ("", "embedded"):
        return StoreUrl("embedded")
    parts = urlsplit(text)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme.lower()
    if scheme == "embedded":
        return StoreUrl("embedded", path=Path(unquote(parts.netloc + parts.path)).expanduser())
    if scheme == "chdb":
        location = unquote(parts.netloc + parts.path)
        if not location:
            raise InvalidInput("a chdb store needs a directory: chdb://DIR", code="invalid_store_url")
        return StoreUrl("chdb", path=Path(location).expanduser(), database=_name(query.get("database", "masar"), "database"))
    if scheme in ("clickhouse", "clickhouse+http", "clickhouse+https", "clickhouses"):
        secure = scheme in ("clickhouse+https", "clickhouses")
        database = parts.path.strip("/") or "masar"
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError:
            raise InvalidInput(f"the port in {text!r} is not a number", code="invalid_store_url") from None
        return StoreUrl(
            "clickhouse",
            host=parts.hostname or "localhost",
            port=port,
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=_name(database, "database"),
            secure=secure,
            cluster=_name(query["cluster"], "cluster") if query.get("cluster") else None,
        )
    raise InvalidInput(
        f"{parts.scheme or text!r} is not a store: use embedded, chdb://DIR or clickhouse://user:password@host:8123/db",
        code="invalid_store_url",
    )
