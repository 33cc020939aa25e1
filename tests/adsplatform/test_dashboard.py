"""The operator dashboard: exact numbers on fixed data, per currency, in a fixed number of queries."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from adsplatform import charts
from adsplatform.dashboard import DashboardFilters, dashboard_charts, dashboard_context, dashboard_data
from campaigns.models import Campaign, DailyMetric, SyncRun
from campaigns.services import campaign_cache_invalidate
from conversions.models import Conversion, ConversionAction
from optimization.models import AccountBudgetSettings, Alert, OptimizationRun
from tests.campaigns.factories import AdAccountFactory, CampaignFactory
from webhooks.models import Lead, WebhookSource

pytestmark = pytest.mark.django_db

USD = 1_000_000  # micros in one unit


def _metric(campaign: Campaign, day: dt.date, cost: float, conversions: str = "0", value: float = 0) -> None:
    DailyMetric.objects.create(
        campaign=campaign,
        date=day,
        cost_micros=int(cost * USD),
        conversions=Decimal(conversions),
        conversion_value_micros=int(value * USD),
    )


@pytest.fixture
def fixed(today):
    """Two USD Google accounts and one EUR Meta account, every date in UTC so 'today' is the site's."""
    google_a = AdAccountFactory(platform="google", name="Acme US", currency_code="USD", time_zone="UTC")
    google_b = AdAccountFactory(platform="google", name="Beta US", currency_code="USD", time_zone="UTC")
    meta = AdAccountFactory(platform="meta", name="Acme EU", currency_code="EUR", time_zone="UTC")
    brand = CampaignFactory(account=google_a, name="Brand", daily_budget_micros=20 * USD)
    generic = CampaignFactory(account=google_b, name="Generic", daily_budget_micros=10 * USD)
    paused = CampaignFactory(account=google_b, name="Paused", daily_budget_micros=99 * USD, status="paused")
    retarget = CampaignFactory(account=meta, platform="meta", name="Retarget", daily_budget_micros=30 * USD)
    yesterday = today - dt.timedelta(days=1)
    old = today - dt.timedelta(days=45)  # outside the default 30-day range and this month
    _metric(brand, today, 5, "2", 20)
    _metric(brand, yesterday, 15, "1", 30)
    _metric(brand, old, 100, "10", 1000)
    _metric(generic, today, 3, "1", 3)
    _metric(paused, yesterday, 2)
    _metric(retarget, today, 7, "0.5", 14)
    _metric(retarget, yesterday, 1000, "3", 4000)
    return {"google_a": google_a, "google_b": google_b, "meta": meta, "brand": brand, "retarget": retarget}


def _default_filters(today: dt.date, account_id: int | None = None) -> DashboardFilters:
    return DashboardFilters(today - dt.timedelta(days=29), today, account_id)


def _in_month(day: dt.date, today: dt.date) -> bool:
    return day >= today.replace(day=1)


def test_money_tiles_are_exact_and_per_currency(fixed, today):
    data = dashboard_data(filters=_default_filters(today))
    tiles = {tile.currency_code: tile for tile in data.tiles}
    assert sorted(tiles) == ["EUR", "USD"]

    yesterday_in_month = _in_month(today - dt.timedelta(days=1), today)
    usd = tiles["USD"]
    assert usd.spend_today_micros == (5 + 3) * USD
    assert usd.spend_month_micros == (5 + 3 + (15 + 2 if yesterday_in_month else 0)) * USD
    assert usd.spend_range_micros == (5 + 15 + 3 + 2) * USD  # the 45-day-old row is out of range
    assert usd.conversions == Decimal("4")
    assert usd.cpa_micros == 25 * USD // 4
    assert usd.roas == Decimal("2.12")  # (20 + 30 + 3) / 25
    assert usd.spend_today == "8.00 USD"

    eur = tiles["EUR"]
    assert eur.spend_today_micros == 7 * USD
    assert eur.spend_range_micros == 1007 * USD
    assert eur.conversions == Decimal("3.5")
    assert eur.cpa_micros == int(Decimal(1007 * USD) / Decimal("3.5"))
    assert eur.roas == Decimal("3.99")  # 4014 / 1007


def test_currencies_are_never_added_together(fixed, today, staff_user):
    data = dashboard_data(filters=_default_filters(today))
    series = {(s.platform, s.currency_code): s for s in data.spend}
    assert sorted(series) == [("google", "USD"), ("meta", "EUR")]
    assert series[("google", "USD")].spend_micros[-1] == 8 * USD
    assert series[("meta", "EUR")].spend_micros[-1] == 7 * USD
    # Enabled campaigns only: the paused 99 USD budget is not a budget being spent.
    assert series[("google", "USD")].daily_budget_micros == 30 * USD
    assert series[("meta", "EUR")].daily_budget_micros == 30 * USD
    html = str(dashboard_context({}, user=staff_user)["dashboard_charts"][0].svg)
    assert "EUR" not in html  # the USD chart says nothing in euros


def test_account_filter_narrows_every_number(fixed, today):
    data = dashboard_data(filters=_default_filters(today, fixed["google_b"].pk))
    assert [tile.currency_code for tile in data.tiles] == ["USD"]
    assert data.tiles[0].spend_today_micros == 3 * USD
    assert data.tiles[0].spend_range_micros == 5 * USD
    assert [row.account.name for row in data.pacing] == ["Beta US"]


def test_pacing_uses_the_monthly_cap_else_daily_budgets(fixed, today):
    AccountBudgetSettings.objects.create(account=fixed["google_a"], monthly_budget_micros=600 * USD)
    data = dashboard_data(filters=_default_filters(today))
    pacing = {row.account.name: row for row in data.pacing}
    days_in_month = calendar.monthrange(today.year, today.month)[1]

    capped = pacing["Acme US"]
    assert capped.cap_micros == 600 * USD
    assert capped.expected_to_date_micros == 600 * USD * today.day // days_in_month
    month_spend = (5 + (15 if _in_month(today - dt.timedelta(days=1), today) else 0)) * USD
    assert capped.spend_month_micros == month_spend

    uncapped = pacing["Acme EU"]
    assert uncapped.cap_micros is None
    assert uncapped.expected_to_date_micros == 30 * USD * today.day


def test_a_shared_budget_counts_once(today):
    account = AdAccountFactory(currency_code="USD", time_zone="UTC")
    for _ in range(3):
        CampaignFactory(
            account=account, daily_budget_micros=50 * USD, budget_is_shared=True, budget_external_id="shared-1"
        )
    CampaignFactory(account=account, daily_budget_micros=5 * USD)
    data = dashboard_data(filters=_default_filters(today))
    assert data.spend[0].daily_budget_micros == 55 * USD


def _conversion(account, action, status: str, finished: dt.datetime, n: int) -> None:
    conversion = Conversion.objects.create(
        platform=account.platform,
        account=account,
        action=action,
        dedupe_key=f"{account.pk}-{status}-{n}-{finished:%j}",
        occurred_at=finished,
        payload={},
        status=status,
    )
    Conversion.objects.filter(pk=conversion.pk).update(updated_at=finished)


def _lead(source, priority: str, received: dt.datetime, campaign=None, is_test: bool = False) -> None:
    Lead.objects.create(source=source, priority=priority, received_at=received, campaign=campaign, is_test=is_test)


def test_uploads_leads_and_alerts_by_day(fixed, today):
    now = timezone.now()
    yesterday_noon = now - dt.timedelta(days=1)
    action = ConversionAction.objects.create(account=fixed["google_a"], external_id="77", name="Purchase")
    for n in range(3):
        _conversion(fixed["google_a"], action, "uploaded", now, n)
    _conversion(fixed["google_a"], action, "rejected", now, 9)
    _conversion(fixed["google_a"], action, "failed", yesterday_noon, 1)
    _conversion(fixed["google_a"], action, "pending", now, 2)  # not finished: not an outcome
    source = WebhookSource.objects.create(name="make", secret="s3cret")
    _lead(source, "urgent", now, fixed["brand"])
    _lead(source, "urgent", now)
    _lead(source, "low", yesterday_noon)
    _lead(source, "high", now, is_test=True)  # test leads are not counted
    Alert.objects.create(
        kind="budget_overspend", subject="x", severity="critical", value=2, threshold=1, message="m",
        opened_at=now, last_seen_at=now, account=fixed["google_a"],
    )  # fmt: skip
    Alert.objects.create(
        kind="api_failures", subject="p", severity="warning", value=2, threshold=1, message="m",
        opened_at=now, last_seen_at=now,
    )  # fmt: skip
    Alert.objects.create(
        kind="budget_overspend", subject="y", severity="warning", value=2, threshold=1, message="m",
        opened_at=now, last_seen_at=now, resolved_at=now,
    )  # fmt: skip

    data = dashboard_data(filters=_default_filters(today))
    assert data.conversion_outcomes["uploaded"][-1] == 3
    assert data.conversion_outcomes["rejected"][-1] == 1
    assert data.conversion_outcomes["failed"][-2] == 1
    assert data.upload_success_rate == 60.0
    assert data.leads_today == {"urgent": 2, "high": 0, "normal": 0, "low": 0}
    assert data.leads_by_priority["low"][-2] == 1
    assert data.open_alerts == {"critical": 1, "warning": 1}

    only_b = dashboard_data(filters=_default_filters(today, fixed["google_b"].pk))
    assert only_b.leads_today["urgent"] == 0
    assert sum(sum(c) for c in only_b.conversion_outcomes.values()) == 0
    assert only_b.open_alerts == {"warning": 1}  # the platform-wide alert concerns every account


def _grow(today: dt.date, accounts: int, campaigns_each: int) -> None:
    """More of everything the dashboard reads, to show the query count does not follow it."""
    source, _ = WebhookSource.objects.get_or_create(name="grow", defaults={"secret": "s"})
    now = timezone.now()
    for a in range(accounts):
        account = AdAccountFactory(currency_code=("USD", "EUR", "JPY")[a % 3], time_zone="Asia/Tokyo")
        AccountBudgetSettings.objects.create(account=account, monthly_budget_micros=1000 * USD)
        SyncRun.objects.create(account=account, status="running")
        action = ConversionAction.objects.create(account=account, external_id=str(a), name="a")
        for c in range(campaigns_each):
            campaign = CampaignFactory(account=account)
            DailyMetric.objects.bulk_create(
                DailyMetric(campaign=campaign, date=today - dt.timedelta(days=d), cost_micros=USD) for d in range(40)
            )
            _lead(source, "normal", now, campaign)
            _conversion(account, action, "uploaded", now, c)


def _count_queries(user) -> tuple[int, int]:
    """Queries of a render with an empty cache, then of one right after it (cache warm)."""
    cache.clear()
    with CaptureQueriesContext(connection) as cold:
        dashboard_context({}, user=user)
    with CaptureQueriesContext(connection) as warm:
        dashboard_context({}, user=user)
    return len(cold), len(warm)


def test_query_count_does_not_grow_with_data(fixed, today, staff_user):
    small = _count_queries(staff_user)
    _grow(today, accounts=6, campaigns_each=5)
    assert _count_queries(staff_user) == small == (8, 6)  # 2 of them: does every lead have a route
    assert {t.currency_code for t in dashboard_context({}, user=staff_user)["dashboard"].tiles} == {"EUR", "JPY", "USD"}


def test_a_committed_sync_shows_its_metrics_at_once(fixed, today):
    """Metrics are cached under the campaigns cache generation, which every committed sync bumps."""
    usd = next(t for t in dashboard_data(filters=_default_filters(today)).tiles if t.currency_code == "USD")
    DailyMetric.objects.filter(campaign=fixed["brand"], date=today).update(cost_micros=50 * USD)
    cached = next(t for t in dashboard_data(filters=_default_filters(today)).tiles if t.currency_code == "USD")
    assert cached.spend_today_micros == usd.spend_today_micros == 8 * USD
    campaign_cache_invalidate()
    fresh = next(t for t in dashboard_data(filters=_default_filters(today)).tiles if t.currency_code == "USD")
    assert fresh.spend_today_micros == 53 * USD


def test_admin_index_is_the_dashboard(client, staff_user, fixed, today):
    client.force_login(staff_user)
    cache.clear()
    with CaptureQueriesContext(connection) as small:
        response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Operator dashboard" in html
    assert 'id="apps-heading"' in html and "Recent actions" in html  # the app list stays
    for chart_id in ("chart-spend-google-usd", "chart-spend-meta-eur", "chart-pacing", "chart-conversions"):
        assert f'id="{chart_id}"' in html
    assert '<label for="dashboard-date_from">From:</label>' in html
    assert "8.00 USD" in html and "7.00 EUR" in html

    _grow(today, accounts=4, campaigns_each=3)
    cache.clear()
    with CaptureQueriesContext(connection) as large:
        assert client.get(reverse("admin:index")).status_code == 200
    assert len(large) == len(small)


def test_filters_narrow_the_range_and_refuse_nonsense(client, staff_user, fixed, today):
    client.force_login(staff_user)
    url = reverse("admin:index")
    response = client.get(url, {"date_from": f"{today:%Y-%m-%d}", "date_to": f"{today:%Y-%m-%d}"})
    usd = next(t for t in response.context["dashboard"].tiles if t.currency_code == "USD")
    assert usd.spend_range_micros == 8 * USD

    response = client.get(
        url, {"date_from": f"{today:%Y-%m-%d}", "date_to": f"{today - dt.timedelta(days=3):%Y-%m-%d}"}
    )
    assert response.status_code == 200
    assert "The end date is before the start date." in response.content.decode()
    assert response.context["dashboard"].filters == _default_filters(today)


def test_campaign_list_draws_sparklines_in_one_query(client, staff_user, fixed, today):
    client.force_login(staff_user)
    url = reverse("admin:campaigns_campaign_changelist")
    with CaptureQueriesContext(connection) as small:
        html = client.get(url).content.decode()
    assert html.count('class="ads-sparkline"') == Campaign.objects.count()
    assert "Brand: spend per day over the last 30 days, 20.00 USD in total, 5.00 USD today" in html
    for n in range(10):
        campaign = CampaignFactory(account=fixed["google_b"])
        _metric(campaign, today, n)
    with CaptureQueriesContext(connection) as large:
        client.get(url)
    assert len(large) == len(small)


def test_campaign_page_shows_pacing_next_to_the_budget(client, staff_user, fixed, today):
    OptimizationRun.objects.create(
        campaign=fixed["brand"],
        old_budget_micros=10 * USD,
        new_budget_micros=20 * USD,
        reason="more",
        source="staff",
        status="applied",
        requested_by=staff_user,
    )
    client.force_login(staff_user)
    html = client.get(reverse("admin:campaigns_campaign_change", args=[fixed["brand"].pk])).content.decode()
    assert "Spend today" in html and "5.00 USD — 25% of the daily budget" in html
    assert "10.00 USD → 20.00 USD" in html
    # Pacing sits right after the daily budget.
    fields = re.findall(r'class="form-row field-([a-z_]+)', html)
    assert fields[fields.index("daily_budget_micros") + 1] == "budget_pacing"


def test_sync_pages_show_progress_and_refresh_while_running(client, staff_user, fixed):
    client.force_login(staff_user)
    done = SyncRun.objects.create(account=fixed["google_a"], status="succeeded", metric_rows_synced=12)
    listing = reverse("admin:campaigns_syncrun_changelist")
    assert "ads-auto-refresh" not in client.get(listing).content.decode()
    assert (
        "ads-auto-refresh" not in client.get(reverse("admin:campaigns_syncrun_change", args=[done.pk])).content.decode()
    )

    running = SyncRun.objects.create(
        account=fixed["google_a"],
        status="running",
        started_at=timezone.now() - dt.timedelta(seconds=75),
        campaigns_synced=4,
        metric_rows_synced=1234,
        progress="metrics 2026-01-01..2026-01-30",
    )
    assert "ads-auto-refresh" in client.get(listing).content.decode()
    html = client.get(reverse("admin:campaigns_syncrun_change", args=[running.pk])).content.decode()
    assert "ads-auto-refresh" in html
    assert re.search(r'data-progress="rows">1,234<', html)
    assert re.search(r'data-progress="elapsed">1m 1[5-9]s so far<', html)


def test_charts_have_titles_marks_and_escaped_text():
    svg = str(
        charts.bar_chart(
            chart_id="c",
            title="Leads <per> day",
            desc="d & e",
            x_labels=["a", "b"],
            series=[charts.Series("Urgent", [1, 0]), charts.Series("Low", [2, 3])],
            y_label="Leads",
            x_label="Day",
        )
    )
    assert '<title id="c-title">Leads &lt;per&gt; day</title>' in svg and "d &amp; e" in svg
    assert svg.count('class="mark"') == 3  # zero values draw nothing
    assert 'fill="url(#c-p1)"' in svg  # the second series is patterned, not only coloured
    line = str(charts.line_chart(chart_id="l", title="t", desc="d", x_labels=["a"], series=[], y_label="", x_label=""))
    assert 'class="mark"' not in line


def test_chart_blocks_have_a_table_for_every_chart(fixed, today):
    blocks = dashboard_charts(dashboard_data(filters=_default_filters(today)))
    assert [b.chart_id for b in blocks] == [
        "chart-spend-google-usd",
        "chart-spend-meta-eur",
        "chart-pacing",
        "chart-conversions",
        "chart-leads",
        "chart-sync-lag",
    ]
    assert all(block.table_rows for block in blocks)
