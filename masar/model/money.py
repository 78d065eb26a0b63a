"""Exact money: decimals quantised to the currency's minor unit, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor units that differ from the common 2. Everything else has 2.
_MINOR_UNITS: dict[str, int] = {
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # no decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip

# Storage scale: enough for every currency above; amounts are stored as DECIMAL(18, 3).
STORAGE_SCALE = 3
MAX_ABS_AMOUNT = Decimal("999999999999999")  # 15 integer digits fit DECIMAL(18, 3)


class MoneyError(ValueError):
    """An amount or currency that cannot be stored exactly."""


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def normalize_currency(value: object) -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise MoneyError(f"currency must be a three-letter ISO 4217 code, got {value!r}")
    return value.strip().upper()


def parse_amount(value: object, currency: str) -> Decimal:
    """An amount from JSON (number or numeric string), rounded half-up to the currency's minor unit.

    JSON numbers arrive as floats; ``repr`` gives the shortest decimal that round-trips, which is
    the literal the client wrote (19.99, not 19.989999...). Rounding to the minor unit absorbs
    client arithmetic such as 19.99 * 3 = 59.970000000000006.
    """
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"amount must be a number, got {value!r}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MoneyError(f"amount must be a finite number, got {value!r}")
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
    elif isinstance(value, Decimal):
        text = str(value)
    else:
        raise MoneyError(f"amount must be a number, got {type(value).__name__}")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"amount must be a number, got {value!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"amount must be a finite number, got {value!r}")
    if abs(amount) > MAX_ABS_AMOUNT:
        raise MoneyError(f"amount {value!r} is too large")
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal, currency: str) -> str:
    """``1234.5, "KWD"`` → ``"KWD 1,234.500"``: the currency's own number of decimals."""
    places = minor_units(currency)
    return f"{currency} {amount:,.{places}f}"
