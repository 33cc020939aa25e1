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

from adsplatform import worker_liveness
from campaigns.models import Campaign, DailyMetric
from campaigns.services import account_data_read_from, campaign_cache_invalidate
from conversions.models import Conversion
from dashboard import svg
from dashboard.attention import alert_object_link, worker_health
from dashboard.charts import dashboard_charts
from dashboard.context import dashboard_context
from dashboard.data import dashboard_data, pacing_severity
from dashboard.filters import DashboardFilters
from optimization.models import OptimizationRun, ProcessHeartbeat
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, SyncRunFactory
from tests.conversions.factories import ConversionActionFactory, ConversionFactory
from tests.optimization.factories import (
    AccountBudgetSettingsFactory,
    AlertFactory,
    OptimizationRunFactory,
    PlatformCallRecordFactory,
    ProcessHeartbeatFactory,
)
from tests.webhooks.factories import LeadFactory, WebhookSourceFactory

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
    account_data_read_from(account_id=campaign.account_id, day=day)  # as the sync that read it would


def _backfilled(*accounts, days: int = 90) -> None:
    """The accounts hold ``days`` of synced data (their first backfill ran): days without a row are 0."""
    for account in accounts:
        account_data_read_from(account_id=account.pk, day=timezone.localdate() - dt.timedelta(days=days - 1))


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
    _backfilled(google_a, google_b, meta)
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
    AccountBudgetSettingsFactory(account=fixed["google_a"], monthly_budget_micros=600 * USD)
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


def _conversion(action, status: str, finished: dt.datetime) -> None:
    """A conversion whose last change (its outcome, for a finished one) was at ``finished``."""
    conversion = ConversionFactory(action=action, status=status, occurred_at=finished)
    Conversion.objects.filter(pk=conversion.pk).update(updated_at=finished)


def test_uploads_leads_and_alerts_by_day(fixed, today):
    now = timezone.now()
    yesterday_noon = now - dt.timedelta(days=1)
    action = ConversionActionFactory(account=fixed["google_a"])
    for _ in range(3):
        _conversion(action, "uploaded", now)
    _conversion(action, "rejected", now)
    _conversion(action, "failed", yesterday_noon)
    _conversion(action, "pending", now)  # not finished: not an outcome
    source = WebhookSourceFactory()
    LeadFactory(source=source, priority="urgent", received_at=now, campaign=fixed["brand"])
    LeadFactory(source=source, priority="urgent", received_at=now)
    LeadFactory(source=source, priority="low", received_at=yesterday_noon)
    LeadFactory(source=source, priority="high", received_at=now, is_test=True)  # test leads are not counted
    AlertFactory(campaign=fixed["brand"], severity="critical")  # an alert of account A
    AlertFactory(kind="api_failures", severity="warning")  # platform-wide: no account
    AlertFactory(campaign=fixed["brand"], severity="warning", resolved=True)  # cleared: not counted

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
    source = WebhookSourceFactory()
    now = timezone.now()
    for a in range(accounts):
        account = AdAccountFactory(currency_code=("USD", "EUR", "JPY")[a % 3], time_zone="Asia/Tokyo")
        AccountBudgetSettingsFactory(account=account, monthly_budget_micros=1000 * USD)
        SyncRunFactory(account=account, running=True)
        action = ConversionActionFactory(account=account)
        for _ in range(campaigns_each):
            campaign = CampaignFactory(account=account)
            DailyMetric.objects.bulk_create(
                DailyMetric(campaign=campaign, date=today - dt.timedelta(days=d), cost_micros=USD) for d in range(40)
            )
            LeadFactory(source=source, received_at=now, campaign=campaign)
            _conversion(action, "uploaded", now)
        _backfilled(account)


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
    # 2 of them: does every lead have a route; 4: the open alerts listed, platform calls, stuck
    # pushes, the worker canary
    assert _count_queries(staff_user) == small == (12, 10)
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
    OptimizationRunFactory(
        campaign=fixed["brand"],
        old_budget_micros=10 * USD,
        new_budget_micros=20 * USD,
        applied=True,
        requested_by=staff_user,
    )
    client.force_login(staff_user)
    html = client.get(reverse("admin:campaigns_campaign_change", args=[fixed["brand"].pk])).content.decode()
    assert "Spend today" in html and "5.00 USD — 25% of the daily budget" in html
    assert "10.00 USD → 20.00 USD" in html
    # Pacing sits right after the daily budget.
    fields = re.findall(r'class="form-row field-([a-z_]+)', html)
    assert fields[fields.index("budget") + 1] == "budget_pacing"


def test_sync_pages_show_progress_and_refresh_while_running(client, staff_user, fixed):
    client.force_login(staff_user)
    done = SyncRunFactory(account=fixed["google_a"], succeeded=True, metric_rows_synced=12)
    listing = reverse("admin:campaigns_syncrun_changelist")
    assert "ads-auto-refresh" not in client.get(listing).content.decode()
    assert (
        "ads-auto-refresh" not in client.get(reverse("admin:campaigns_syncrun_change", args=[done.pk])).content.decode()
    )

    running = SyncRunFactory(
        account=fixed["google_a"],
        running=True,
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
    drawing = str(
        svg.bar_chart(
            chart_id="c",
            title="Leads <per> day",
            desc="d & e",
            x_labels=["a", "b"],
            series=[svg.Series("Urgent", [1, 0]), svg.Series("Low", [2, 3])],
            y_label="Leads",
            x_label="Day",
        )
    )
    assert '<title id="c-title">Leads &lt;per&gt; day</title>' in drawing and "d &amp; e" in drawing
    assert drawing.count('class="mark"') == 3  # zero values draw nothing
    assert 'fill="url(#c-p1)"' in drawing  # the second series is patterned, not only coloured
    line = str(svg.line_chart(chart_id="l", title="t", desc="d", x_labels=["a"], series=[], y_label="", x_label=""))
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


# --- Chart axes: round ticks, written as precisely as their step --------------------------------


@pytest.mark.parametrize(
    "peak, maximum, step",
    [
        (0, 1.0, 0.25),
        (1, 1.0, 0.2),
        (3, 3.0, 1.0),
        (7, 8.0, 2.0),
        (12, 12.5, 2.5),
        (150, 150.0, 50.0),
        (442, 500.0, 100.0),
        (12_345, 12_500.0, 2_500.0),
        (0.07, 0.08, 0.02),
    ],
)
def test_axis_scales_are_tight_and_round(peak, maximum, step):
    scale = svg.nice_scale(peak)
    assert (scale.maximum, scale.step) == (maximum, step)
    assert scale.ticks[-1] == maximum and len(scale.ticks) <= 6


def test_count_axes_never_tick_at_fractions():
    assert svg.nice_scale(1, integer=True).ticks == [0, 1]
    assert svg.nice_scale(7, integer=True).ticks == [0, 2, 4, 6, 8]
    assert svg.nice_scale(0, integer=True).ticks == [0, 1]


@pytest.mark.parametrize(
    "value, step, compact, text",
    [
        (0.25, 0.25, False, "0.25"),  # not "0.3" (one decimal) nor "0" (none)
        (0.75, 0.25, False, "0.75"),
        (0.5, 0.25, False, "0.5"),
        (1.0, 0.25, False, "1"),
        (0.3, 0.1, False, "0.3"),  # 0.1 × 3 written without float noise
        (7.5, 2.5, False, "7.5"),
        (1250, 250, False, "1,250"),
        (12_500, 2_500, True, "12.5k"),  # not a rounded "12k"
        (10_000, 2_500, True, "10k"),
        (0, 2_500, True, "0"),
        (0.06, 0.02, False, "0.06"),
    ],
)
def test_tick_labels_are_not_mis_rounded(value, step, compact, text):
    assert svg.format_tick(value, step, compact=compact) == text


def test_chart_ticks_show_quarter_values():
    drawing = str(
        svg.line_chart(
            chart_id="q",
            title="t",
            desc="d",
            x_labels=["a", "b"],
            series=[svg.Series("Spend", [0.2, 1.0])],
            y_label="",
            x_label="",
        )
    )
    ticks = re.findall(r'text-anchor="end" fill="#222">([^<]*)</text>', drawing)
    assert ticks == ["0", "0.2", "0.4", "0.6", "0.8", "1"]
    money = str(
        svg.line_chart(
            chart_id="m",
            title="t",
            desc="d",
            x_labels=["a"],
            series=[svg.Series("Spend", [1_000_000])],  # 1 unit of money in micros
            y_label="USD",
            x_label="",
            tick_format=lambda v, step: svg.format_tick(v / USD, step / USD),
        )
    )
    assert re.findall(r'text-anchor="end" fill="#222">([^<]*)</text>', money) == ["0", "0.2", "0.4", "0.6", "0.8", "1"]
    pacing = str(
        svg.hbar_chart(
            chart_id="p",
            title="t",
            desc="d",
            rows=[svg.HBar("Acme", 1.25, "1.25%"), svg.HBar("Beta", 0.5, "0.5%")],
            x_label="%",
        )
    )
    ticks = re.findall(r'text-anchor="middle" fill="#222">([^<]*)</text>', pacing)
    assert ticks[:6] == ["0", "0.25", "0.5", "0.75", "1", "1.25"]


# --- Needs attention: open alerts, platform outages, stuck pushes, the worker -------------------


def _hours_ago(hours: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(hours=hours)


def test_open_alerts_are_listed_worst_and_oldest_first_with_links(fixed, today, staff_user):
    brand = fixed["brand"]
    overspend = AlertFactory(campaign=brand, severity="critical", opened_at=_hours_ago(1))
    outage = AlertFactory(
        kind="api_failures", subject="platform:meta", subject_label="Meta", severity="critical", opened_at=_hours_ago(2)
    )
    pacing = AlertFactory(kind="pacing_overspend", campaign=fixed["retarget"], opened_at=_hours_ago(30))
    resolved = AlertFactory(kind="webhook_delay", resolved=True)

    attention = dashboard_data(filters=_default_filters(today)).attention
    assert [a.id for a in attention.alerts] == [outage.pk, overspend.pk, pacing.pk]
    assert resolved.pk not in [a.id for a in attention.alerts]
    assert attention.alert_total == 3
    by_id = {a.id: a for a in attention.alerts}
    assert by_id[overspend.pk].object_url == reverse("admin:campaigns_campaign_change", args=[brand.pk])
    assert by_id[overspend.pk].object_label == "Campaign"
    assert by_id[overspend.pk].alert_url == reverse("admin:optimization_alert_change", args=[overspend.pk])
    assert by_id[outage.pk].object_url.endswith("/admin/campaigns/adaccount/?platform__exact=meta")
    assert not by_id[outage.pk].notified

    html = dashboard_context({}, user=staff_user)
    assert html["dashboard"].attention.alerts[0].id == outage.pk


@pytest.mark.parametrize(
    "subject, details, url_name, label",
    [
        ("account:7", {}, "admin:campaigns_adaccount_change", "Ad account"),
        ("source:3", {}, "admin:webhooks_webhooksource_change", "Webhook source"),
        ("webhooks:inbox", {"event_id": 42}, "admin:webhooks_webhookevent_change", "Webhook event #42"),
        ("webhooks:leads", {"lead_id": 9}, "admin:webhooks_lead_change", "Lead #9"),
        ("workers:celery", {}, "admin:optimization_processheartbeat_changelist", "Process heartbeats"),
    ],
)
def test_every_alert_subject_links_to_its_page(subject, details, url_name, label):
    url, text = alert_object_link(subject, details)
    key = subject.partition(":")[2]
    args = [next(iter(details.values()))] if details else ([int(key)] if key.isdigit() else [])
    assert (url, text) == (reverse(url_name, args=args), label)
    assert alert_object_link("something:else", {}) == ("", "")


def test_a_viewer_of_one_account_sees_only_its_alerts_and_no_platform_matters(fixed, today, client_with_role):
    mine = AlertFactory(campaign=fixed["brand"])  # of account A
    AlertFactory(kind="pacing_overspend", campaign=fixed["retarget"])
    AlertFactory(kind="api_failures", subject="platform:google", severity="critical")
    viewer = client_with_role("viewer", [fixed["google_a"]]).user
    attention = dashboard_context({}, user=viewer)["dashboard"].attention
    assert [a.id for a in attention.alerts] == [mine.pk] and attention.alert_total == 1
    assert attention.platforms is None and attention.worker is None  # they concern every account


def test_admin_index_lists_the_open_alerts(client, staff_user, fixed):
    alert = AlertFactory(
        campaign=fixed["brand"],
        severity="critical",
        opened_at=_hours_ago(1),
        message="Daily overspend: “Brand” spent 5.00 USD today.",
    )
    client.force_login(staff_user)
    html = client.get(reverse("admin:index")).content.decode()
    row = html.split(f'data-alert="{alert.pk}"')[1].split("</tr>")[0]
    assert "Budget overspend (today)" in row and "Critical" in row and "not sent yet" in row
    assert (
        f'href="{reverse("admin:campaigns_campaign_change", args=[fixed["brand"].pk])}" data-object-link>Brand' in row
    )
    assert "2026-06-17 14:00 UTC" in row  # since when
    assert 'data-tile="open-alerts">1<' in html


@pytest.mark.parametrize(
    "percent, tone",
    [(442, "critical"), (151, "critical"), (150, "warning"), (111, "warning"), (110, "ok"), (100, "ok"),
     (90, "ok"), (89.9, "notice"), (50, "notice"), (49, "warning"), (0, "warning"), (None, "")],
)  # fmt: skip
def test_pacing_is_coloured_by_severity(percent, tone):
    assert pacing_severity(percent)[0] == tone


def test_pacing_bars_carry_their_severity(fixed, today):
    AccountBudgetSettingsFactory(account=fixed["google_b"], monthly_budget_micros=1 * USD)  # far over
    blocks = {b.chart_id: b for b in dashboard_charts(dashboard_data(filters=_default_filters(today)))}
    drawing = str(blocks["chart-pacing"].svg)
    assert 'data-tone="critical"' in drawing and "far over" in drawing
    assert any("(far over pace)" in row[4] for row in blocks["chart-pacing"].table_rows)
    assert "red far over pace" in blocks["chart-pacing"].note


def test_platform_outages_come_from_the_call_records(fixed, today):
    now = timezone.now()
    for n in range(10):
        PlatformCallRecordFactory(
            outcome="transient", error_code="UNAVAILABLE", called_at=now - dt.timedelta(minutes=n)
        )
    PlatformCallRecordFactory(platform="meta", operation="insights", outcome="rate_limited", error_code="17")
    PlatformCallRecordFactory.create_batch(19, platform="meta", operation="insights")
    # Outside the 15-minute window:
    PlatformCallRecordFactory(
        platform="meta", operation="insights", outcome="auth", called_at=now - dt.timedelta(hours=2)
    )
    attention = dashboard_data(filters=_default_filters(today)).attention
    platforms = {p.platform: p for p in attention.platforms}
    google, meta = platforms["google"], platforms["meta"]
    assert (google.status, google.severity, google.calls, google.failures) == ("down", "critical", 10, 10)
    assert google.last_failure == "transient UNAVAILABLE" and google.last_ok_at is None
    assert (meta.status, meta.calls, meta.failures, meta.error_percent) == ("errors", 20, 1, "5%")
    assert [p.platform for p in attention.platform_problems] == ["google", "meta"]
    assert "above 5% failed of at least 10 calls" in attention.platform_note


def test_stuck_budget_pushes(fixed, today):
    now = timezone.now()

    def run(campaign, **fields):  # a pending raise from 20 to 25 USD
        return OptimizationRunFactory(
            campaign=campaign, old_budget_micros=20 * USD, new_budget_micros=25 * USD, **fields
        )

    overdue = run(fixed["brand"], push_attempts=1, next_attempt_at=now - dt.timedelta(minutes=10))
    tried = run(fixed["retarget"], push_attempts=5, next_attempt_at=now + dt.timedelta(minutes=5))
    on_time = run(
        CampaignFactory(account=fixed["google_b"]), push_attempts=1, next_attempt_at=now + dt.timedelta(minutes=1)
    )
    OptimizationRun.objects.filter(pk=on_time.pk).update(created_at=now - dt.timedelta(hours=1))
    attention = dashboard_data(filters=_default_filters(today)).attention
    assert [p.id for p in attention.stuck] == [overdue.pk, tried.pk] and attention.stuck_total == 2
    first = attention.stuck[0]
    assert first.change == "budget 20.00 USD → 25.00 USD" and "next attempt was due" in first.why
    assert attention.stuck[1].why == "5 attempts so far"
    assert first.campaign_url == reverse("admin:campaigns_campaign_change", args=[fixed["brand"].pk])
    # An account filter narrows them like everything else.
    only_a = dashboard_data(filters=_default_filters(today, fixed["google_a"].pk)).attention
    assert [p.id for p in only_a.stuck] == [overdue.pk]


def test_worker_health_from_the_canary_and_the_heartbeat(db, tmp_path, monkeypatch):
    now = timezone.now()
    path = tmp_path / "beat"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    assert worker_health(now=now).state == "unknown"

    worker_liveness.record(path)
    assert worker_health(now=now).state == "consuming"
    worker_liveness.record(path, now=now.timestamp() - 600)
    stalled = worker_health(now=now)
    assert stalled.state == "stalled" and "not consuming" in stalled.detail

    path.unlink()
    ProcessHeartbeatFactory(name=ProcessHeartbeat.WORKER_CANARY, beat_at=now - dt.timedelta(seconds=20))
    assert worker_health(now=now).state == "consuming"  # a worker ran the canary, on whatever machine
    ProcessHeartbeat.objects.filter(name=ProcessHeartbeat.WORKER_CANARY).update(
        canary_pending_since=now - dt.timedelta(minutes=6)
    )
    waiting = worker_health(now=now)
    assert waiting.state == "stalled" and "queued 6 minutes ago" in waiting.detail
