"""Days before an account's first synced day are "No data" on the dashboard, never 0."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse

from campaigns.models import DailyMetric
from campaigns.services import account_data_read_from
from dashboard.charts import dashboard_charts
from dashboard.data import dashboard_data
from dashboard.filters import DashboardFilters
from tests.campaigns.factories import AdAccountFactory, CampaignFactory

pytestmark = pytest.mark.django_db

USD = 1_000_000


def _thirty_days(today: dt.date) -> DashboardFilters:
    return DashboardFilters(today - dt.timedelta(days=29), today)


def test_an_account_not_synced_yet_shows_no_data_anywhere(today):
    account = AdAccountFactory(currency_code="USD", time_zone="UTC")
    CampaignFactory(account=account, daily_budget_micros=10 * USD)
    data = dashboard_data(filters=_thirty_days(today))
    (tile,) = data.tiles
    assert (tile.spend_today, tile.spend_month, tile.spend_range, tile.cpa) == ("No data", "No data", "No data", "—")
    assert tile.data_from is None
    (series,) = data.spend
    assert series.spend_micros == [None] * 30
    (pacing,) = data.pacing
    assert pacing.percent is None and pacing.basis == "no synced data this month"
    (spend_chart, *_) = dashboard_charts(data)
    assert {row[1] for row in spend_chart.table_rows} == {"No data"}
    assert "30 day(s) before the first synced day have no data" in spend_chart.note


def test_days_before_the_first_synced_day_are_gaps_and_later_days_count(today):
    account = AdAccountFactory(currency_code="USD", time_zone="UTC", name="Fresh")
    campaign = CampaignFactory(account=account, daily_budget_micros=10 * USD)
    first = today - dt.timedelta(days=4)  # the first sync read the last five days
    account_data_read_from(account_id=account.pk, day=first)
    DailyMetric.objects.create(campaign=campaign, date=today, cost_micros=6 * USD)
    data = dashboard_data(filters=_thirty_days(today))
    (series,) = data.spend
    assert series.spend_micros == [None] * 25 + [0, 0, 0, 0, 6 * USD]  # synced days without spend are 0
    (tile,) = data.tiles
    assert (tile.spend_range_micros, tile.data_from) == (6 * USD, first)
    (pacing,) = data.pacing
    # Paced over the five synced days only (all in this month: the clock is mid-month).
    assert pacing.expected_to_date_micros == 5 * 10 * USD
    assert pacing.basis == f"daily budgets × 5 days (data from {first:%Y-%m-%d})"


def test_the_admin_index_says_from_which_day_data_exists(client, staff_user, today):
    synced = AdAccountFactory(currency_code="USD", time_zone="UTC")
    CampaignFactory(account=synced)
    account_data_read_from(account_id=synced.pk, day=today - dt.timedelta(days=9))
    never = AdAccountFactory(currency_code="EUR", time_zone="UTC", platform="meta")
    CampaignFactory(account=never, platform="meta")
    client.force_login(staff_user)
    cache.clear()
    html = client.get(reverse("admin:index")).content.decode()
    assert f"Data from {today - dt.timedelta(days=9):%Y-%m-%d}: earlier days were never synced" in html
    assert "No synced data in this range yet" in html
    assert '<dd data-tile="spend-range">No data</dd>' in html
