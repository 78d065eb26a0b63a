"""Settings: the only place that reads the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, read once from the environment (prefix ``MASAR_``)."""

    model_config = SettingsConfigDict(env_prefix="MASAR_", extra="ignore")

    data_dir: Path = Field(default=Path("masar-data"), description="Where the embedded store lives.")
    store: str | None = Field(
        default=None, description="Which store: embedded (default), chdb://DIR or clickhouse://user:pw@host:8123/db."
    )
    host: str = "127.0.0.1"
    port: int = 8000

    session_timeout_seconds: int = Field(default=30 * 60, ge=60, description="Inactivity that ends a session.")
    dedup_days: int = Field(default=7, ge=1, description="How long a messageId is remembered per source.")
    max_future_seconds: int = Field(
        default=24 * 3600, ge=0, description="How far in the future an event time may be before it is rejected."
    )
    flush_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often the ingestor moves the write-ahead log into segments."
    )
    wal_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    compact_fanout: int = Field(default=8, ge=2, description="Segments of one level merged together.")
    ingest_memory_mb: int = Field(
        default=1024,
        ge=128,
        description="Memory DuckDB may use in the ingestor process (compaction sorts) before spilling to disk.",
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


def tune_gc_for_service() -> None:
    """For a long-running process that handles a stream of events (the server, the ingestor).

    Capture allocates a few containers per message, nearly all freed by reference counting; with
    the default thresholds the cycle collector still ran every 700 allocations. Freezing what
    exists at start (imports, the app) and collecting the youngest generation every 50,000
    allocations lowered CPU per captured event in an A/B (docs/performance.md), most steadily in
    the ingestor.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
