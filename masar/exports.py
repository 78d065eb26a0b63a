"""Every table exports to CSV and Excel: one writer for the CLI and the web app."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from masar.errors import InvalidInput

FORMATS = (".csv", ".xlsx")


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path``; the suffix picks the format (.csv or .xlsx)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        pacsv.write_csv(table, path)
    elif suffix == ".xlsx":
        _write_xlsx(table, path)
    else:
        raise InvalidInput(f"cannot export to {path.name}: use a .csv or .xlsx file name")
    return path


def _write_xlsx(table: pa.Table, path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("data")
    sheet.append(table.column_names)
    for row in table.to_pylist():
        # Money stays exact: Excel gets the decimal as a number only when it fits a double exactly
        # enough for display (≤ 15 significant digits); otherwise as text.
        sheet.append([_cell(v) for v in row.values()])
    book.save(path)


def _cell(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value) if len(value.as_tuple().digits) <= 15 else str(value)
    if isinstance(value, dict | list):
        return str(value)
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)  # type: ignore[union-attr]
    return value
