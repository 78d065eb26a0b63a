"""Bulk import of history: CSV, JSON Lines and Parquet, through the same enrichment as capture."""

from masar.importers.run import ImportReport, import_path

__all__ = ["ImportReport", "import_path"]
