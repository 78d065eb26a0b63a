"""Masar: self-hosted sales-funnel analytics for online stores."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"
__all__ = ["open", "__version__"]


def open(data_dir: str | Path | None = None, **overrides):  # noqa: A001 - mirrors builtins.open on purpose
    """Open the store at ``data_dir`` (default: ``MASAR_DATA_DIR`` or ``./masar-data``)."""
    from masar.config import Settings
    from masar.store.embedded.store import EmbeddedStore

    settings = Settings(**({"data_dir": Path(data_dir)} if data_dir is not None else {}), **overrides)
    return EmbeddedStore(settings)
