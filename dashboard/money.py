"""Money as the dashboard shows it: in the currency's own precision, with its code."""

from __future__ import annotations

from decimal import Decimal

from platforms.base import minor_unit_micros

MICROS = 1_000_000


def format_money(micros: int | Decimal | float | None, currency_code: str) -> str:
    """An amount in its currency's own precision (JPY without decimals), code after it."""
    if micros is None:
        return "—"
    unit = minor_unit_micros(currency_code)
    places = 0 if unit >= MICROS else (3 if unit == 1_000 else 2)
    return f"{Decimal(micros) / MICROS:,.{places}f} {currency_code}"
