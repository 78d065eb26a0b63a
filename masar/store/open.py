"""Opening the store a URL names (masar/store/url.py)."""

from __future__ import annotations

from typing import Any

from masar.config import Settings
from masar.store.url import parse_store_url


def open_store(settings: Settings, url: str | None = None) -> Any:
    """The store for ``url`` (else the settings' ``store``, i.e. ``MASAR_STORE``; else embedded)."""
    parsed = parse_store_url(url if url is not None else settings.store)
    if parsed.kind == "embedded":
        from masar.store.embedded.store import EmbeddedStore

        if parsed.path is not None:
            settings = settings.model_copy(update={"data_dir": parsed.path})
        return EmbeddedStore(settings)
    from masar.store.clickhouse.store import ClickHouseStore

    return ClickHouseStore(settings, parsed)
