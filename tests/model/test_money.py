from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masar.model.money import MoneyError, format_amount, minor_units, normalize_currency, parse_amount


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        (19.99, "SAR", "19.99"),
        (59.970000000000006, "SAR", "59.97"),  # client float arithmetic is absorbed
        (0.1 + 0.2, "USD", "0.30"),
        ("12.5", "KWD", "12.500"),
        (12.3456, "KWD", "12.346"),
        (12.3454, "BHD", "12.345"),
        (1.005, "OMR", "1.005"),
        (2.5, "JPY", "3"),  # half-up, no decimals
        (1999, "EGP", "1999.00"),
        ("1,250.75", "AED", "1250.75"),
        (-15.5, "SAR", "-15.50"),  # refunds may be negative
        (0, "JOD", "0.000"),
        (Decimal("10.125"), "USD", "10.13"),
    ],
)
def test_parse_amount(value, currency, expected):
    assert parse_amount(value, currency) == Decimal(expected)
    assert str(parse_amount(value, currency)) == expected


@pytest.mark.parametrize("value", [None, True, "abc", "", float("nan"), float("inf"), [], {}, "1e999", 10**20])
def test_parse_amount_rejects(value):
    with pytest.raises(MoneyError):
        parse_amount(value, "SAR")


@pytest.mark.parametrize(("code", "places"), [("KWD", 3), ("BHD", 3), ("OMR", 3), ("JOD", 3), ("JPY", 0),
                                              ("SAR", 2), ("AED", 2), ("EGP", 2), ("USD", 2)])  # fmt: skip
def test_minor_units(code, places):
    assert minor_units(code) == places


@pytest.mark.parametrize(("value", "expected"), [("sar", "SAR"), (" kwd ", "KWD")])
def test_currency_normalized(value, expected):
    assert normalize_currency(value) == expected


@pytest.mark.parametrize("value", ["SA", "RIYAL", "12A", None, 3])
def test_currency_rejected(value):
    with pytest.raises(MoneyError):
        normalize_currency(value)


def test_format_amount():
    assert format_amount(Decimal("1234.5"), "KWD") == "KWD 1,234.500"
    assert format_amount(Decimal("1234.5"), "SAR") == "SAR 1,234.50"


@given(st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False))
def test_two_decimal_amounts_are_exact(amount):
    assert parse_amount(str(amount), "SAR") == amount
    assert parse_amount(float(amount), "SAR") == amount  # floats of 2-decimal literals round-trip
