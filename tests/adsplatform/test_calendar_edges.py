"""Date logic on the days that break it: month ends, 29 February, new year, daylight-saving
changes in the accounts' zones, and accounts whose "today" is not UTC's.

Each test pins the instant with the ``clock`` marker (see tests/conftest.py); expected dates are
written out, not recomputed with the code under test.
"""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import DailyMetric
from campaigns.services import account_data_read_from, account_today, default_sync_window, latest_account_today
from dashboard.context import dashboard_context
from dashboard.data import dashboard_data
from dashboard.filters import DashboardFilters
from dashboard.queries import dashboard_accounts
from optimization import alerts, optimizer, services
from optimization.models import AccountBudgetSettings, Alert
from tests.campaigns.factories import AdAccountFactory, CampaignFactory

pytestmark = pytest.mark.django_db

NEW_YORK, LONDON, BERLIN = "America/New_York", "Europe/London", "Europe/Berlin"

# UTC instants, and each zone's date at that instant.
EDGES = {
    "first of the month": (
        "2026-12-01T12:00:00+00:00",
        {NEW_YORK: "2026-12-01", LONDON: "2026-12-01", BERLIN: "2026-12-01"},
    ),
    "last of the month": (
        "2026-11-30T12:00:00+00:00",
        {NEW_YORK: "2026-11-30", LONDON: "2026-11-30", BERLIN: "2026-11-30"},
    ),
    "29 February": ("2024-02-29T12:00:00+00:00", {NEW_YORK: "2024-02-29", LONDON: "2024-02-29", BERLIN: "2024-02-29"}),
    "new year in Berlin only": (
        "2025-12-31T23:30:00+00:00",
        {NEW_YORK: "2025-12-31", LONDON: "2025-12-31", BERLIN: "2026-01-01"},
    ),
    "New York springs forward": (
        "2026-03-08T07:30:00+00:00",
        {NEW_YORK: "2026-03-08", LONDON: "2026-03-08", BERLIN: "2026-03-08"},
    ),
    "New York falls back (second 01:30)": (
        "2026-11-01T06:30:00+00:00",
        {NEW_YORK: "2026-11-01", LONDON: "2026-11-01", BERLIN: "2026-11-01"},
    ),
    "Europe springs forward": (
        "2026-03-29T01:30:00+00:00",
        {NEW_YORK: "2026-03-28", LONDON: "2026-03-29", BERLIN: "2026-03-29"},
    ),
    "Europe falls back": (
        "2026-10-25T00:30:00+00:00",
        {NEW_YORK: "2026-10-24", LONDON: "2026-10-25", BERLIN: "2026-10-25"},
    ),
    "New York still yesterday": (
        "2026-06-17T02:00:00+00:00",
        {NEW_YORK: "2026-06-16", LONDON: "2026-06-17", BERLIN: "2026-06-17"},
    ),
}


def _edge_cases():
    for name, (instant, dates) in EDGES.items():
        for zone, expected in dates.items():
            yield pytest.param(instant, zone, dt.date.fromisoformat(expected), id=f"{name}-{zone}")


def set_spend(campaign, day: dt.date, cost_micros: int) -> None:
    DailyMetric.objects.update_or_create(campaign=campaign, date=day, defaults={"cost_micros": cost_micros})
    account_data_read_from(account_id=campaign.account_id, day=day)  # as the sync that read it would


@pytest.mark.parametrize(("instant", "zone", "expected"), list(_edge_cases()))
def test_today_and_the_sync_window_are_the_accounts_own_dates(clock, settings, instant, zone, expected):
    clock.move_to(instant, tick=False)
    google = AdAccountFactory(platform="google", time_zone=zone)
    meta = AdAccountFactory(platform="meta", time_zone=zone)
    assert account_today(google) == expected
    # The lookback counts days, not hours: a 23- or 25-hour day is one day.
    assert default_sync_window(google) == (
        expected - dt.timedelta(days=settings.SYNC_LOOKBACK_DAYS_GOOGLE - 1),
        expected,
    )
    assert default_sync_window(meta) == (expected - dt.timedelta(days=settings.SYNC_LOOKBACK_DAYS_META - 1), expected)


# --- Budget alerts ------------------------------------------------------------------------------


@pytest.mark.clock("2026-12-01T12:00:00+00:00")
def test_on_the_first_of_the_month_one_overspend_is_one_alert():
    campaign = CampaignFactory(daily_budget_micros=100_000_000, account__time_zone=NEW_YORK)
    set_spend(campaign, dt.date(2026, 11, 30), 300_000_000)  # last month's overspend is last month's
    set_spend(campaign, dt.date(2026, 12, 1), 105_000_000)

    alerts.alerts_evaluate()
    assert not Alert.objects.exists(), "105% of a day's budget on day 1 is within the daily rule; no pacing yet"

    set_spend(campaign, dt.date(2026, 12, 1), 120_000_000)
    alerts.alerts_evaluate()
    assert list(Alert.objects.values_list("kind", flat=True)) == [Alert.Kind.BUDGET_OVERSPEND]


@pytest.mark.parametrize(
    ("instant", "days"),
    [("2024-02-29T12:00:00+00:00", 29), ("2026-11-30T12:00:00+00:00", 30), ("2026-12-02T12:00:00+00:00", 2)],
    ids=["29 February", "last of November", "second of the month"],
)
def test_monthly_pacing_counts_the_days_of_this_month(clock, instant, days):
    clock.move_to(instant, tick=False)
    campaign = CampaignFactory(daily_budget_micros=100_000_000, account__time_zone=LONDON)
    today = account_today(campaign.account)
    set_spend(campaign, today.replace(day=1) - dt.timedelta(days=1), 900_000_000)  # the month before
    for day in range(1, today.day + 1):
        set_spend(campaign, today.replace(day=day), 105_000_000)

    alerts.alerts_evaluate()

    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.PACING_OVERSPEND
    assert f"{days} days × 100.00 USD" in alert.message
    assert alert.details["spend_month_micros"] == days * 105_000_000


@pytest.mark.clock("2025-12-31T23:30:00+00:00")
def test_at_new_year_each_account_is_judged_on_its_own_date():
    berlin = CampaignFactory(name="Berlin", daily_budget_micros=100_000_000, account__time_zone=BERLIN)
    new_york = CampaignFactory(name="New York", daily_budget_micros=100_000_000, account__time_zone=NEW_YORK)
    for day in range(1, 32):
        set_spend(berlin, dt.date(2025, 12, day), 105_000_000)
        set_spend(new_york, dt.date(2025, 12, day), 105_000_000)
    set_spend(berlin, dt.date(2026, 1, 1), 50_000_000)

    alerts.alerts_evaluate()

    # Berlin is in a new month with half a day's budget spent; New York is still in December.
    alert = Alert.objects.get()
    assert (alert.kind, alert.subject_label) == (Alert.Kind.PACING_OVERSPEND, "New York")
    assert "through 2025-12-31" in alert.message and "31 days" in alert.message


@pytest.mark.clock("2026-11-01T06:30:00+00:00")
def test_the_daily_alert_reads_the_accounts_date_on_a_25_hour_day():
    """01:30 in New York for the second time: it is 1 November there, as it was an hour ago."""
    campaign = CampaignFactory(daily_budget_micros=100_000_000, account__time_zone=NEW_YORK)
    set_spend(campaign, dt.date(2026, 11, 1), 150_000_000)
    set_spend(campaign, dt.date(2026, 10, 31), 0)
    alerts.alerts_evaluate()
    alert = Alert.objects.get(kind=Alert.Kind.BUDGET_OVERSPEND)
    assert "today (2026-11-01, America/New_York)" in alert.message


# --- The optimizer's month ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "elapsed", "days_in_month"),
    [("2026-12-01T12:00:00+00:00", 0, 31), ("2024-02-29T12:00:00+00:00", 28, 29), ("2025-12-31T23:30:00+00:00", 0, 31)],
    ids=["first of the month", "29 February", "new year in Berlin"],
)
def test_optimizer_month_to_date_stops_at_yesterday_inside_this_month(clock, instant, elapsed, days_in_month):
    clock.move_to(instant, tick=False)
    account = AdAccountFactory(time_zone=BERLIN)
    campaign = CampaignFactory(account=account, daily_budget_micros=100_000_000)
    today = account_today(account)
    for offset in range(0, 40):  # converting, so the optimizer may judge it; well under the cap's pace
        DailyMetric.objects.create(
            campaign=campaign, date=today - dt.timedelta(days=offset), cost_micros=10_000_000, conversions=5
        )
    settings = AccountBudgetSettings.objects.create(account=account, monthly_budget_micros=1_000_000_000)

    snapshot = services.optimizer_snapshot(account=account, budget_settings=settings)

    assert snapshot.today == today
    assert snapshot.month_spend_through_yesterday_micros == elapsed * 10_000_000
    guardrails = services.optimizer_guardrails(budget_settings=settings)
    proposals = optimizer.propose_pacing(snapshot, guardrails)
    if elapsed == 0:
        assert proposals == []  # nothing spent yet this month to judge the pace by
    else:
        assert proposals and f"after {elapsed} of {days_in_month} days" in proposals[0].reason


# --- Dashboard and API ranges -------------------------------------------------------------------


@pytest.mark.clock("2025-12-31T23:30:00+00:00")
def test_default_ranges_end_on_the_day_an_account_ahead_of_utc_has_begun(auth_client, staff_user):
    berlin = CampaignFactory(name="Berlin", daily_budget_micros=100_000_000, account__time_zone=BERLIN)
    set_spend(berlin, dt.date(2025, 12, 31), 40_000_000)
    set_spend(berlin, dt.date(2026, 1, 1), 7_000_000)
    set_spend(berlin, dt.date(2025, 12, 2), 1_000_000)  # 31 days before 1 January: outside 30 days

    assert latest_account_today() == dt.date(2026, 1, 1)
    row = auth_client.get("/api/v1/campaigns/").json()["results"][0]
    assert row["metrics"]["cost_micros"] == 47_000_000
    detail = auth_client.get(f"/api/v1/campaigns/{berlin.pk}/metrics/").json()
    assert detail["days"][-1]["date"] == "2026-01-01"

    context = dashboard_context({}, user=staff_user)
    form_filters = context["dashboard_form"].filters()
    assert (form_filters.date_from, form_filters.date_to) == (dt.date(2025, 12, 3), dt.date(2026, 1, 1))
    tile = context["dashboard"].tiles[0]
    # Today and the month are Berlin's: 1 January, and a month of one day.
    assert (tile.spend_today_micros, tile.spend_month_micros, tile.spend_range_micros) == (
        7_000_000,
        7_000_000,
        47_000_000,
    )


@pytest.mark.clock("2026-12-01T12:00:00+00:00")
def test_dashboard_pacing_on_the_first_is_one_day_of_budget():
    campaign = CampaignFactory(daily_budget_micros=100_000_000, account__time_zone=NEW_YORK)
    set_spend(campaign, dt.date(2026, 11, 30), 500_000_000)
    set_spend(campaign, dt.date(2026, 12, 1), 50_000_000)
    accounts = dashboard_accounts()
    data = dashboard_data(filters=DashboardFilters(dt.date(2026, 11, 2), dt.date(2026, 12, 1)), accounts=accounts)
    (pacing,) = data.pacing
    assert (pacing.spend_month_micros, pacing.expected_to_date_micros, pacing.percent) == (
        50_000_000,
        100_000_000,
        50.0,
    )
    assert data.tiles[0].spend_range_micros == 550_000_000


@pytest.mark.clock("2026-03-29T01:30:00+00:00")
def test_admin_spend_columns_count_days_in_the_accounts_dates(client, staff_user):
    """03:30 in Berlin on the short day; New York is still on 28 March."""
    berlin = CampaignFactory(name="Berlin", account__time_zone=BERLIN)
    new_york = CampaignFactory(name="New York", account__time_zone=NEW_YORK)
    for campaign, today in ((berlin, dt.date(2026, 3, 29)), (new_york, dt.date(2026, 3, 28))):
        for offset in range(8):  # today and the 7 days before it: 7 days in the column, 1 day outside
            set_spend(campaign, today - dt.timedelta(days=offset), 1_000_000)
    set_spend(new_york, dt.date(2026, 3, 29), 0)

    from campaigns.admin import CampaignAdmin
    from campaigns.models import Campaign

    client.force_login(staff_user)
    request = client.get("/admin/").wsgi_request
    rows = {c.name: c for c in CampaignAdmin(Campaign, None).get_queryset(request)}
    assert (rows["Berlin"].spend_7, rows["New York"].spend_7) == (7_000_000, 7_000_000)


# --- Sync through the Graph emulator -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.clock("2025-12-31T23:30:00+00:00")
def test_a_sync_at_new_year_stores_the_accounts_dates(sandbox, settings):
    """The Graph emulator dates insights in the account's zone (Berlin, already 1 January);
    the sync's window and the stored dates follow it, not UTC's 31 December."""
    from campaigns import services as campaign_services

    (account,) = campaign_services.account_discover(platforms=["meta"])
    assert account.time_zone == BERLIN
    run = campaign_services.campaign_sync(run=campaign_services.sync_run_create(account=account, enqueue=False))

    assert run.status == "succeeded"
    first = dt.date(2026, 1, 1) - dt.timedelta(days=settings.SYNC_LOOKBACK_DAYS_META - 1)
    assert (run.date_from, run.date_to) == (first, dt.date(2026, 1, 1))
    dates = DailyMetric.objects.filter(campaign__account=account).values_list("date", flat=True)
    assert (min(dates), max(dates)) == (first, dt.date(2026, 1, 1))
