"""The platforms' floors for a daily budget, in one place: the guards check them before anything
is sent, and the emulators refuse below them, so both agree on the numbers.

The platform stays the authority: a preview (validate-only) asks it, and a push it refuses is
recorded with its words; these floors only let an operator hear it sooner. The real floors are
the platforms' own and vary by account: Google reports a campaign's per-day minimum in
``BudgetPerDayMinimumErrorDetails`` when it refuses a budget
(``CampaignBudgetError.BUDGET_BELOW_PER_DAY_MINIMUM``); Meta reports an ad account's floors on its
``minimum_budgets`` edge and refuses a lower budget with error 100, subcode 1885272 ("Your budget
is too low"). The values below: for Meta, ``min_daily_budget_imp`` (the floor of
impression-billed ad sets, the lowest one) for common currencies; for Google, one unit of the
currency per day (100 of a currency without a minor unit, 1,000 KRW).
"""

from __future__ import annotations

from decimal import Decimal

from platforms.base import MICROS_PER_UNIT, THREE_DECIMAL_CURRENCIES, ZERO_DECIMAL_CURRENCIES

# Whole currency units a day.
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
GOOGLE_MIN_DAILY_BUDGET_UNITS: dict[str, Decimal] = {"JPY": Decimal(100), "KRW": Decimal(1000)}


def _fallback_units(currency_code: str) -> Decimal:
    code = currency_code.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return Decimal(100)
    if code in THREE_DECIMAL_CURRENCIES:
        return Decimal("1.000")
    return Decimal("1.00")


def meta_min_daily_budget_micros(currency_code: str) -> int:
    """The lowest daily budget Meta takes (campaign or ad set), in micros."""
    code = currency_code.upper()
    return int(META_MIN_DAILY_BUDGET_UNITS.get(code, _fallback_units(code)) * MICROS_PER_UNIT)


def google_min_daily_budget_micros(currency_code: str) -> int:
    """The per-day minimum of a Google campaign budget, in micros."""
    code = currency_code.upper()
    return int(GOOGLE_MIN_DAILY_BUDGET_UNITS.get(code, _fallback_units(code)) * MICROS_PER_UNIT)


def minimum_daily_budget_micros(platform: str, currency_code: str) -> int:
    if platform == "meta":
        return meta_min_daily_budget_micros(currency_code)
    return google_min_daily_budget_micros(currency_code)
