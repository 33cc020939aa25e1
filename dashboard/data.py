"""Everything the dashboard shows for a date range and an account, from the few rows of
``dashboard.queries``: money added up per currency here, never across."""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from campaigns.coverage import days_of, has_data, window_data_from
from campaigns.services import campaign_cache_generation
from conversions.models import Conversion
from conversions.selectors import FINAL_STATUSES
from dashboard.attention import Attention, dashboard_attention
from dashboard.filters import DashboardFilters
from dashboard.queries import (
    METRICS_CACHE_SECONDS,
    OUTCOMES_CACHE_SECONDS,
    AccountRow,
    conversion_outcomes_by_day,
    daily_budgets_by_account,
    dashboard_accounts,
    leads_by_day_and_priority,
    metrics_by_account_and_day,
    open_alerts_by_severity,
)
from platforms.base import format_money
from webhooks.models import Priority
from webhooks.selectors import routing_gaps


@dataclass(frozen=True)
class CurrencyTile:
    """One currency's money: today and month to date (account dates), and the range's outcomes.

    A spend is None when no account of the currency has synced data for it ("No data", not 0)."""

    currency_code: str
    spend_today_micros: int | None
    spend_month_micros: int | None
    spend_range_micros: int | None
    conversions: Decimal
    conversion_value_micros: int
    data_from: date | None = None  # the first day of the range with data (None: no day has any)

    @property
    def cpa_micros(self) -> int | None:
        if self.spend_range_micros is None or not self.conversions:
            return None
        return int(self.spend_range_micros / self.conversions)

    @property
    def roas(self) -> Decimal | None:
        if not self.spend_range_micros:
            return None
        return (Decimal(self.conversion_value_micros) / self.spend_range_micros).quantize(Decimal("0.01"))

    # What the template shows: formatted here, because a template cannot pass the currency.
    @property
    def spend_today(self) -> str:
        return _money_or_no_data(self.spend_today_micros, self.currency_code)

    @property
    def spend_month(self) -> str:
        return _money_or_no_data(self.spend_month_micros, self.currency_code)

    @property
    def spend_range(self) -> str:
        return _money_or_no_data(self.spend_range_micros, self.currency_code)

    @property
    def cpa(self) -> str:
        return format_money(self.cpa_micros, self.currency_code)

    @property
    def conversions_text(self) -> str:
        if self.spend_range_micros is None:
            return NO_DATA
        return f"{self.conversions.normalize():,f}" if self.conversions else "0"


NO_DATA = "No data"


def _money_or_no_data(micros: int | None, currency_code: str) -> str:
    return NO_DATA if micros is None else format_money(micros, currency_code)


@dataclass(frozen=True)
class SpendSeries:
    """Daily spend of one platform in one currency, beside the daily budgets enabled today."""

    platform: str
    currency_code: str
    spend_micros: list[int | None]  # None: a day before every account's first synced day
    daily_budget_micros: int


@dataclass(frozen=True)
class PacingRow:
    account: AccountRow
    spend_month_micros: int | None  # None: no synced day this month
    expected_to_date_micros: int | None  # what the cap or budgets allow by today
    cap_micros: int | None  # the monthly cap, when one is set
    basis: str  # what the expectation is based on, in words

    @property
    def percent(self) -> float | None:
        if self.spend_month_micros is None or not self.expected_to_date_micros:
            return None
        return round(100 * self.spend_month_micros / self.expected_to_date_micros, 1)

    @property
    def tone(self) -> str:
        """How far off pace, as a severity (a key of svg.TONES); "" without an allowance."""
        return pacing_severity(self.percent)[0]

    @property
    def pace_label(self) -> str:
        return pacing_severity(self.percent)[1]


# Pacing bands, by how much money is at stake: overspend is worse than underspend at the same
# distance (money gone cannot be unspent), and the 110% edge is the overspend alert's threshold.
PACING_FAR_OVER, PACING_OVER, PACING_ON, PACING_UNDER = 150.0, 110.0, 90.0, 50.0


def pacing_severity(percent: float | None) -> tuple[str, str]:
    """(tone, words) of a month-to-date pace: 442% is critical, 0% a warning, 100% fine."""
    if percent is None:
        return "", "no allowance"
    if percent > PACING_FAR_OVER:
        return "critical", "far over pace"
    if percent > PACING_OVER:
        return "warning", "over pace"
    if percent >= PACING_ON:
        return "ok", "on pace"
    if percent >= PACING_UNDER:
        return "notice", "under pace"
    return "warning", "far under pace"


@dataclass(frozen=True)
class SyncLagRow:
    account: AccountRow
    lag_minutes: float | None  # None: never synced


@dataclass
class Dashboard:
    filters: DashboardFilters
    today: date  # the site's date; leads "today" use it
    accounts: list[AccountRow]  # every account (the filter offers them all)
    scoped_accounts: list[AccountRow]
    tiles: list[CurrencyTile]
    leads_today: dict[str, int]
    open_alerts: dict[str, int] | None  # by severity; None when the alerts app is not installed
    spend: list[SpendSeries]
    pacing: list[PacingRow]
    conversion_outcomes: dict[str, list[int]]  # final status → count per day
    leads_by_priority: dict[str, list[int]]  # priority → count per day
    sync_lag: list[SyncLagRow]
    syncs_in_progress: int = 0
    notes: list[str] = field(default_factory=list)
    attention: Attention | None = None

    @property
    def open_alert_total(self) -> int | None:
        return None if self.open_alerts is None else sum(self.open_alerts.values())

    @property
    def upload_success_rate(self) -> float | None:
        finished = sum(sum(counts) for counts in self.conversion_outcomes.values())
        uploaded = sum(self.conversion_outcomes.get(Conversion.Status.UPLOADED, []))
        return round(100 * uploaded / finished, 1) if finished else None


def _cached(key: str, timeout: int, compute):
    full_key = f"dashboard:{key}"
    found = cache.get(full_key)
    if found is None:
        found = compute()
        cache.set(full_key, found, timeout)
    return found


def dashboard_data(*, filters: DashboardFilters, accounts: list[AccountRow] | None = None) -> Dashboard:
    """Everything the dashboard shows: at most ten queries (one fewer when ``accounts`` is passed in,
    two fewer when the metrics and outcomes are cached)."""
    visible = filters.visible_account_ids
    if accounts is None:
        accounts = dashboard_accounts(visible_account_ids=visible)
    site_today = timezone.localdate()
    scoped = [a for a in accounts if filters.account_id in (None, a.id)]
    account_ids = None if filters.account_id is None and visible is None else [a.id for a in scoped]
    days = filters.days

    # One metrics read covers the chosen range and every account's month to date.
    account_todays = [a.today for a in scoped] or [site_today]
    window_from = min(filters.date_from, min(today.replace(day=1) for today in account_todays))
    window_to = max(filters.date_to, max(account_todays))
    metrics = _cached(
        f"metrics:g{campaign_cache_generation()}:{window_from}:{window_to}:{account_ids}",
        METRICS_CACHE_SECONDS,
        lambda: metrics_by_account_and_day(date_from=window_from, date_to=window_to, account_ids=account_ids),
    )
    budgets = daily_budgets_by_account(account_ids=account_ids)
    outcomes = _cached(
        f"outcomes:{filters.date_from}:{filters.date_to}:{account_ids}",
        OUTCOMES_CACHE_SECONDS,
        lambda: conversion_outcomes_by_day(
            date_from=filters.date_from, date_to=filters.date_to, account_ids=account_ids
        ),
    )
    lead_counts = leads_by_day_and_priority(
        date_from=min(filters.date_from, site_today),
        date_to=max(filters.date_to, site_today),
        account_ids=account_ids,
    )
    # Alerts of no account concern every account: shown beside one account's, to those who see every account.
    open_alerts = open_alerts_by_severity(account_ids=account_ids, platform_wide=visible is None)
    attention = dashboard_attention(
        account_ids=account_ids, platform_wide=visible is None, alert_total=sum((open_alerts or {}).values())
    )

    zero = (0, Decimal(0), 0)
    tiles: dict[str, dict[str, Any]] = {}
    spend_by_series: dict[tuple[str, str], list[int | None]] = {}
    budget_by_series: dict[tuple[str, str], int] = defaultdict(int)
    pacing: list[PacingRow] = []
    for account in scoped:
        # Days before the account's first synced day were never read: they add nothing and stay
        # None ("no data") where no account of a tile or series has data, never 0.
        tile = tiles.setdefault(
            account.currency_code,
            {"today": None, "month": None, "range": None, "conversions": Decimal(0), "value": 0, "from": None},
        )
        month_days = [
            day for day in days_of(account.today.replace(day=1), account.today) if has_data(account.data_from, day)
        ]
        month_spend = sum(metrics.get((account.id, day), zero)[0] for day in month_days) if month_days else None
        if has_data(account.data_from, account.today):
            tile["today"] = (tile["today"] or 0) + metrics.get((account.id, account.today), zero)[0]
        if month_spend is not None:
            tile["month"] = (tile["month"] or 0) + month_spend
        data_from = window_data_from(account.data_from, filters.date_from, filters.date_to)
        if data_from is not None:
            tile["from"] = min(tile["from"] or data_from, data_from)
        key = (account.platform, account.currency_code)
        series = spend_by_series.setdefault(key, [None] * len(days))
        for index, day in enumerate(days):
            if not has_data(account.data_from, day):
                continue
            cost, conversions, value = metrics.get((account.id, day), zero)
            series[index] = (series[index] or 0) + cost
            tile["range"] = (tile["range"] or 0) + cost
            tile["conversions"] += conversions
            tile["value"] += value
        daily_budget = budgets.get(account.id, 0)
        budget_by_series[key] += daily_budget
        pacing.append(_pacing_row(account, month_spend, daily_budget))

    leads_today = {priority: lead_counts.get((site_today, priority), 0) for priority in Priority.values}
    return Dashboard(
        filters=filters,
        today=site_today,
        accounts=accounts,
        scoped_accounts=scoped,
        tiles=[
            CurrencyTile(
                currency_code=currency,
                spend_today_micros=t["today"],
                spend_month_micros=t["month"],
                spend_range_micros=t["range"],
                conversions=t["conversions"],
                conversion_value_micros=t["value"],
                data_from=t["from"],
            )
            for currency, t in sorted(tiles.items())
        ],
        leads_today=leads_today,
        open_alerts=open_alerts,
        spend=[
            SpendSeries(platform, currency, spend, budget_by_series[(platform, currency)])
            for (platform, currency), spend in sorted(spend_by_series.items())
        ],
        pacing=pacing,
        conversion_outcomes={
            status: [outcomes.get((day, status), 0) for day in days] for status in map(str, FINAL_STATUSES)
        },
        leads_by_priority={
            priority: [lead_counts.get((day, priority), 0) for day in days] for priority in Priority.values
        },
        sync_lag=[SyncLagRow(account, _lag_minutes(account)) for account in scoped],
        syncs_in_progress=sum(1 for a in scoped if a.sync_is_active),
        notes=routing_gaps(),
        attention=attention,
    )


def _pacing_row(account: AccountRow, month_spend: int | None, daily_budget: int) -> PacingRow:
    """Month-to-date spend against the monthly cap's share so far, else daily budgets × days elapsed.

    Only days with synced data count on both sides: an account first synced mid-month is paced
    from its first synced day, and one with no data this month has no pace."""
    if month_spend is None:
        return PacingRow(account, None, None, account.monthly_cap_micros, "no synced data this month")
    month_start = account.today.replace(day=1)
    counted_from = max(month_start, account.data_from or month_start)
    days_elapsed = (account.today - counted_from).days + 1
    since = "" if counted_from == month_start else f" (data from {counted_from:%Y-%m-%d})"
    if account.monthly_cap_micros:
        days_in_month = calendar.monthrange(account.today.year, account.today.month)[1]
        expected = account.monthly_cap_micros * days_elapsed // days_in_month
        basis = f"monthly cap × {days_elapsed}/{days_in_month} days{since}"
        return PacingRow(account, month_spend, expected, account.monthly_cap_micros, basis)
    if daily_budget:
        return PacingRow(
            account, month_spend, daily_budget * days_elapsed, None, f"daily budgets × {days_elapsed} days{since}"
        )
    return PacingRow(account, month_spend, None, None, "no cap or daily budget")


def _lag_minutes(account: AccountRow) -> float | None:
    if account.last_synced_at is None:
        return None
    return max((timezone.now() - account.last_synced_at).total_seconds() / 60, 0.0)


# --- Charts ---------------------------------------------------------------------------------------
