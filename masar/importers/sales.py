"""Small sales inputs from CSV: exchange rates and ad spend. Bad rows are reported with their line
and reason; the good rows beside them are kept."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from masar.engine.facts import Rate
from masar.errors import InvalidInput
from masar.model.money import MoneyError, normalize_currency, parse_amount


@dataclass
class Parsed:
    rows: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line N: reason"


def _reader(path: Path, required: tuple[str, ...]) -> csv.DictReader:
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name} is not UTF-8 text", code="not_utf8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InvalidInput(
            f"{path.name} needs the columns {', '.join(required)}; it lacks {', '.join(missing)}",
            code="missing_columns",
        )
    reader.fieldnames = columns
    return reader


def _day(text: str | None) -> date:
    try:
        return date.fromisoformat((text or "").strip()[:10])
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def read_rates(path: Path) -> Parsed:
    """``date,base,quote,rate``: one ``base`` is worth ``rate`` ``quote`` on that day."""
    parsed = Parsed()
    reader = _reader(path, ("date", "base", "quote", "rate"))
    for line, row in enumerate(reader, start=2):
        try:
            base, quote = normalize_currency(row.get("base")), normalize_currency(row.get("quote"))
            rate = Decimal((row.get("rate") or "").strip())
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"rate {row.get('rate')!r} must be a positive number")
            parsed.rows.append(Rate(_day(row.get("date")), base, quote, rate))
        except (ValueError, InvalidOperation, MoneyError) as exc:
            parsed.errors.append(f"line {line}: {_reason(exc, row.get('rate'))}")
    return parsed


def read_spend(path: Path, default_currency: str) -> Parsed:
    """``date,channel,campaign,spend[,currency]``; rows repeating a day, channel and campaign add up."""
    parsed = Parsed()
    reader = _reader(path, ("date", "channel", "spend"))
    totals: dict[tuple[date, str, str, str], Decimal] = {}
    for line, row in enumerate(reader, start=2):
        try:
            channel = (row.get("channel") or "").strip()
            if not channel:
                raise ValueError("channel is empty")
            campaign = (row.get("campaign") or "").strip()
            currency = normalize_currency((row.get("currency") or "").strip() or default_currency)
            amount = parse_amount((row.get("spend") or "").strip(), currency)
            if amount < 0:
                raise ValueError(f"spend {row.get('spend')!r} is negative")
            key = (_day(row.get("date")), channel[:200], campaign[:300], currency)
            totals[key] = totals.get(key, Decimal(0)) + amount
        except (ValueError, InvalidOperation, MoneyError) as exc:
            parsed.errors.append(f"line {line}: {_reason(exc, row.get('spend'))}")
    parsed.rows = [
        {"day": d, "channel": ch, "campaign": camp, "spend": amount, "currency": cur}
        for (d, ch, camp, cur), amount in totals.items()
    ]
    return parsed


def _reason(exc: Exception, value: Any) -> str:
    if isinstance(exc, InvalidOperation):
        return f"{value!r} is not a number"
    return str(exc) or type(exc).__name__
