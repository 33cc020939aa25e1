"""The platform's one money formatter: every screen shows an amount in its currency's precision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from platforms.base import format_money


@pytest.mark.parametrize(
    ("micros", "currency", "shown"),
    [
        (1_234_500_000, "USD", "1,234.50 USD"),
        (1_234_500_000, "JPY", "1,234 JPY"),  # no minor unit: no decimals (rounded half to even)
        (1_235_500_000, "JPY", "1,236 JPY"),
        (12_345_000, "KWD", "12.345 KWD"),  # three decimals
        (Decimal("1500000.4"), "EUR", "1.50 EUR"),
        (0, "GBP", "0.00 GBP"),
        (None, "USD", "—"),
        (2_500_000, "", "2.50"),  # no currency known: two decimals, no code
    ],
)
def test_amounts_in_their_currency_s_precision(micros, currency, shown):
    assert format_money(micros, currency) == shown
