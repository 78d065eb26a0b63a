"""The analyses that run inside ClickHouse, by query kind: each compiles the same query object as
the embedded runner to ClickHouse SQL and returns the same result (docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from masar.store.clickhouse import audiences, correlation, customers, funnels, leaks, paths, sales

RUNNERS: dict[str, Callable[[Any, Any], Any]] = {
    **funnels.RUNNERS,
    **leaks.RUNNERS,
    **correlation.RUNNERS,
    **sales.RUNNERS,
    **audiences.RUNNERS,
    **customers.RUNNERS,
    **paths.RUNNERS,
}
