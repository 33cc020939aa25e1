"""The platforms' own floors for a daily budget, checked before anything is sent.

The platform stays the authority: a preview (validate-only) asks it, and a push that it refuses
is recorded with its words. These floors only let the platform explain itself sooner.

- Google: a budget must be at least the currency's minimum CPC
  (``CampaignBudgetError.MONEY_AMOUNT_LESS_THAN_CURRENCY_MINIMUM_CPC``); for the currencies below
  that is one minor unit, so the currency's minimum unit is the floor.
- Meta: an ad account's ``minimum_budgets`` edge reports ``min_daily_budget_imp`` (impression-billed
  ad sets, the lowest of its floors) per currency, about 1 USD. The table holds it for common
  currencies; for others the floor is one minimum unit and Meta's own validation decides.
"""

from __future__ import annotations

from decimal import Decimal

from platforms.base import MICROS_PER_UNIT, minor_unit_micros

# Whole currency units (Meta's min_daily_budget_imp for impression-billed ad sets).
META_MIN_DAILY_BUDGET_UNITS: dict[str, Decimal] = {
    "USD": Decimal("1.00"),
    "EUR": Decimal("1.00"),
    "GBP": Decimal("1.00"),
    "CAD": Decimal("1.00"),
    "AUD": Decimal("1.00"),
    "NZD": Decimal("1.00"),
    "CHF": Decimal("1.00"),
    "SGD": Decimal("1.00"),
    "BRL": Decimal("5.00"),
    "MXN": Decimal("20.00"),
    "INR": Decimal("75.00"),
    "JPY": Decimal("150"),
    "KRW": Decimal("1400"),
}


def minimum_daily_budget_micros(platform: str, currency_code: str) -> int:
    """The lowest daily budget the platform takes in this currency, in micros."""
    code = currency_code.upper()
    unit = minor_unit_micros(code)
    if platform == "meta" and code in META_MIN_DAILY_BUDGET_UNITS:
        return int(META_MIN_DAILY_BUDGET_UNITS[code] * MICROS_PER_UNIT)
    return unit
