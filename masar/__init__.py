"""Masar: self-hosted sales-funnel analytics for online stores."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"
__all__ = ["open", "__version__"]


def open(data_dir: str | Path | None = None, *, store: str | None = None, **overrides):  # noqa: A001 - mirrors builtins.open
    """Open a store: the embedded one at ``data_dir`` (default: ``MASAR_DATA_DIR`` or
    ``./masar-data``), or the one ``store`` names (``chdb://DIR``, ``clickhouse://…``; default
    ``MASAR_STORE``)."""
    from masar.config import Settings
    from masar.store.open import open_store

    settings = Settings(**({"data_dir": Path(data_dir)} if data_dir is not None else {}), **overrides)
    return open_store(settings, store)
