"""Reading through the official SDK: accounts, campaigns and insights, across pages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from platforms.base import Account, AdPlatform
from platforms.meta import MetaPlatform
from platforms.sandbox.meta import DEMO_ACCOUNT_ID, MetaSandbox, daily_insight

from .conftest import INSIGHTS_PAGE_SIZE, LIST_PAGE_SIZE


def test_adapter_implements_the_protocol(platform: MetaPlatform) -> None:
    assert isinstance(platform, AdPlatform)
    assert platform.platform == "meta"


def test_check_credentials_passes_with_the_sandbox_credentials(platform: MetaPlatform, sandbox: MetaSandbox) -> None:
    platform.check_credentials()
    paths = [path for _, path in sandbox.state.requests]
    assert paths == ["/v26.0/me/", f"/v26.0/{sandbox.state.business_id}/"]


def test_list_accounts_returns_the_business_accounts_without_act_prefix(
    platform: MetaPlatform, jpy_account: Account
) -> None:
    accounts = platform.list_accounts()

    assert [(a.external_id, a.currency_code, a.time_zone) for a in accounts] == [
        (DEMO_ACCOUNT_ID, "EUR", "Europe/Berlin"),
        ("300000000000002", "JPY", "Asia/Tokyo"),
    ]
    assert all(a.platform == "meta" and a.name for a in accounts)


def test_campaigns_are_read_across_several_pages(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    campaigns = list(platform.list_campaigns(eur_account))

    expected_ids = sandbox.state.data.accounts[DEMO_ACCOUNT_ID].campaign_ids
    assert [c.external_id for c in campaigns] == expected_ids  # all ten, once each, in order
    pages = -(-len(expected_ids) // LIST_PAGE_SIZE)
    assert sandbox.state.request_count("/campaigns") == pages >= 3


def test_campaign_statuses_and_eur_budgets_are_mapped(platform: MetaPlatform, eur_account: Account) -> None:
    by_name = {c.name: c for c in platform.list_campaigns(eur_account)}

    brand = by_name["Brand - Always On"]
    assert (brand.status, brand.daily_budget_micros, brand.budget_level) == ("enabled", 50_000_000, "campaign")
    # 65.50 EUR = 6,550 cents; one cent is 10,000 micros.
    assert by_name["Retargeting - Cart Abandoners"].daily_budget_micros == 65_500_000
    assert by_name["Lead Gen - Webinar"].status == "paused"
    assert by_name["Summer Sale 2025"].status == "removed"  # ARCHIVED
    assert by_name["Old Creative Test"].status == "removed"  # DELETED, still listed
    lifetime = by_name["Advantage+ Shopping - Q4 Flight"]
    assert (lifetime.daily_budget_micros, lifetime.budget_micros) == (None, 3_000_000_000)
    ad_set = by_name["Interest Tests - Ad Set Budgets"]
    assert (ad_set.budget_level, ad_set.daily_budget_micros, ad_set.budget_micros) == ("ad_set", None, None)


def test_jpy_budgets_have_no_minor_unit(platform: MetaPlatform, jpy_account: Account) -> None:
    campaigns = list(platform.list_campaigns(jpy_account))

    # The sandbox's JPY campaigns have daily budgets of 5,000 / 6,000 / ... yen.
    assert [c.daily_budget_micros for c in campaigns] == [5_000_000_000, 6_000_000_000, 7_000_000_000, 8_000_000_000]


def test_insights_stream_across_pages_with_every_row_once(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    date_from, date_to = today - timedelta(days=5), today - timedelta(days=1)

    rows = list(platform.iter_daily_metrics(eur_account, date_from, date_to))

    campaigns = [sandbox.state.campaign(c) for c in sandbox.state.data.accounts[DEMO_ACCOUNT_ID].campaign_ids]
    expected = {
        (c.campaign_id, day): raw
        for c in campaigns
        for day in (date_from + timedelta(days=n) for n in range(5))
        if (raw := daily_insight(c, "EUR", day)) is not None
    }
    assert len(rows) == len(expected) > 2 * INSIGHTS_PAGE_SIZE
    assert {(r.campaign_external_id, r.date) for r in rows} == set(expected)
    assert sandbox.state.request_count("/insights") >= 3
    for row in rows:
        raw = expected[(row.campaign_external_id, row.date)]
        assert row.impressions == int(raw["impressions"])
        assert row.clicks == int(raw["clicks"])
        assert row.cost_micros == int(Decimal(raw["spend"]) * 1_000_000)


def test_insights_count_each_conversion_once(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    # Graph lists "omni_purchase", "purchase" and "offsite_conversion.fb_pixel_purchase" for the
    # same purchases; only one of them may count.
    day = datetime.now(ZoneInfo("Europe/Berlin")).date() - timedelta(days=1)
    rows = {r.campaign_external_id: r for r in platform.iter_daily_metrics(eur_account, day, day)}

    checked = 0
    for campaign_id, row in rows.items():
        raw = daily_insight(sandbox.state.campaign(campaign_id), "EUR", day)
        actions = {a["action_type"]: int(a["value"]) for a in raw["actions"]}
        expected = actions.get("purchase", 0) + actions.get("lead", 0)
        assert row.conversions == expected
        values = {v["action_type"]: Decimal(v["value"]) for v in raw.get("action_values", [])}
        assert row.conversion_value_micros == int(values.get("purchase", 0) * 1_000_000)
        checked += bool(expected)
    assert checked >= 3


def test_insight_dates_are_the_account_time_zone_days(
    platform: MetaPlatform, jpy_account: Account, sandbox: MetaSandbox
) -> None:
    tokyo_today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    date_from = tokyo_today - timedelta(days=2)

    rows = list(platform.iter_daily_metrics(jpy_account, date_from, tokyo_today))

    # Tokyo's "today" is reported as Tokyo reports it, whatever the server's or UTC's date.
    assert {r.date for r in rows} <= {date_from, date_from + timedelta(days=1), tokyo_today}
    assert max(r.date for r in rows) == tokyo_today
    for row in rows:
        raw = daily_insight(sandbox.state.campaign(row.campaign_external_id), "JPY", row.date)
        assert "." not in raw["spend"]  # whole yen
        assert row.cost_micros == int(raw["spend"]) * 1_000_000


def test_insights_outside_the_reported_window_are_empty(platform: MetaPlatform, eur_account: Account) -> None:
    rows = list(platform.iter_daily_metrics(eur_account, date(2001, 1, 1), date(2001, 1, 31)))
    assert rows == []
