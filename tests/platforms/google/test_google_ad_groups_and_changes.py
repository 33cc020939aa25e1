"""Ad groups, GAQL FROM ad_group, and budget / status changes on the Google Ads emulator,
through the official client (the adapter, or the client itself where the adapter has no say)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google_sandbox_support import UK_ACCOUNT, US_ACCOUNT

from platforms.base import ChangeTarget, PermanentError
from platforms.sandbox.google import GoogleSandboxData

FLIGHT_CAMPAIGN = "21000000009"  # the UK account's "Demand Gen - Prospecting": a total budget


def _yesterday(account) -> datetime:
    return datetime.now(ZoneInfo(account.time_zone)).date() - timedelta(days=1)


def _gaql(google, query: str) -> list:
    return list(google._stream("1234567890", "1000000001", query))


def test_ad_groups_are_listed_with_names_statuses_and_no_budget(google):
    ad_groups = list(google.list_ad_groups(US_ACCOUNT))

    assert len(ad_groups) == 10 * 5
    by_campaign: dict[str, list] = {}
    for ad_group in ad_groups:
        by_campaign.setdefault(ad_group.campaign_external_id, []).append(ad_group)
        assert ad_group.daily_budget_micros is None and ad_group.lifetime_budget_micros is None
    assert len(by_campaign) == 10 and all(len(groups) == 5 for groups in by_campaign.values())
    assert {a.status for a in ad_groups} == {"enabled", "paused", "removed"}
    one = ad_groups[0]
    assert google.get_ad_group(US_ACCOUNT, one.external_id) == one
    with pytest.raises(PermanentError) as missing:
        google.get_ad_group(US_ACCOUNT, "49999999999")
    assert missing.value.code == "NOT_FOUND"


def test_ad_group_metrics_add_up_to_their_campaign(google):
    day = _yesterday(US_ACCOUNT)
    campaigns = {r.campaign_external_id: r for r in google.iter_daily_metrics(US_ACCOUNT, day, day)}
    totals: dict[str, list[int]] = {}
    for row in google.iter_ad_group_daily_metrics(US_ACCOUNT, day, day):
        assert row.date == day
        sums = totals.setdefault(row.campaign_external_id, [0, 0, 0])
        sums[0] += row.impressions
        sums[1] += row.clicks
        sums[2] += row.cost_micros
    assert set(totals) == set(campaigns)
    for campaign_id, (impressions, clicks, cost) in totals.items():
        campaign = campaigns[campaign_id]
        assert (impressions, clicks, cost) == (campaign.impressions, campaign.clicks, campaign.cost_micros)


def test_gaql_from_ad_group_honours_where_order_by_and_limit(google):
    rows = _gaql(
        google,
        "SELECT ad_group.id, ad_group.name, campaign.id FROM ad_group "
        "WHERE campaign.id = 20000000003 ORDER BY ad_group.name DESC LIMIT 3",
    )
    names = [r.ad_group.name for r in rows]
    assert len(rows) == 3 and names == sorted(names, reverse=True)
    assert {r.campaign.id for r in rows} == {20000000003}

    paused = _gaql(google, "SELECT ad_group.id, ad_group.status FROM ad_group WHERE ad_group.status = 'PAUSED'")
    assert len(paused) == 10  # the last ad group of every campaign

    day = _yesterday(US_ACCOUNT).isoformat()
    by_cost = _gaql(
        google,
        "SELECT ad_group.id, metrics.cost_micros, segments.date FROM ad_group "  # noqa: S608
        f"WHERE segments.date = '{day}' AND metrics.cost_micros > 0 ORDER BY metrics.cost_micros DESC LIMIT 5",
    )
    costs = [r.metrics.cost_micros for r in by_cost]
    assert len(costs) == 5 and costs == sorted(costs, reverse=True) and costs[-1] > 0

    ordered = _gaql(google, "SELECT campaign.id, campaign.name FROM campaign ORDER BY campaign.name LIMIT 4")
    assert [r.campaign.name for r in ordered] == sorted(r.campaign.name for r in ordered)
    assert ordered[0].campaign.name == "Brand - Search"


def test_ad_group_metrics_stream_at_scale(start_sandbox, make_adapter):
    sandbox = start_sandbox(GoogleSandboxData.scaled(campaigns=400, days=12, stream_batch_size=1_000))
    google = make_adapter(sandbox)
    last = _yesterday(US_ACCOUNT)
    count = sum(1 for _ in google.iter_ad_group_daily_metrics(US_ACCOUNT, last - timedelta(days=9), last))
    assert count == 400 * 5 * 10
    stream = next(c for c in sandbox.state.calls if c.method == "SearchStream")
    assert stream.messages == 20  # batches of 1,000 rows, streamed


@pytest.mark.parametrize("level, object_id", [("campaign", "20000000003"), ("ad_group", "40000000011")])
def test_pause_and_enable_apply_and_validate_only_changes_nothing(sandbox, google, level, object_id):
    target = ChangeTarget(level, object_id)
    read = google.get_campaign if level == "campaign" else google.get_ad_group
    assert read(US_ACCOUNT, object_id).status == "enabled"

    checked = google.update_status(US_ACCOUNT, target, "paused", validate_only=True)
    assert checked.validated_only and read(US_ACCOUNT, object_id).status == "enabled"

    paused = google.update_status(US_ACCOUNT, target, "paused")
    assert not paused.validated_only and paused.resource.endswith(object_id)
    assert read(US_ACCOUNT, object_id).status == "paused"
    google.update_status(US_ACCOUNT, target, "enabled")
    assert read(US_ACCOUNT, object_id).status == "enabled"


def test_a_removed_campaign_cannot_be_enabled(google):
    with pytest.raises(PermanentError) as refused:
        google.update_status(US_ACCOUNT, ChangeTarget("campaign", "20000000010"), "enabled", validate_only=True)
    assert refused.value.code == "OPERATION_NOT_PERMITTED_FOR_REMOVED_RESOURCE"
    assert google.get_campaign(US_ACCOUNT, "20000000010").status == "removed"


def test_daily_budget_checks_and_minimums(sandbox, google):
    campaign = google.get_campaign(US_ACCOUNT, "20000000003")
    target = ChangeTarget("campaign", campaign.external_id, campaign.external_id, campaign.budget_external_id)

    checked = google.update_budget(US_ACCOUNT, target, daily_budget_micros=55_000_000, validate_only=True)
    assert checked.validated_only and checked.daily_budget_micros == 55_000_000
    assert google.get_campaign(US_ACCOUNT, "20000000003").daily_budget_micros == campaign.daily_budget_micros

    for amount, code in (
        (10_000, "BUDGET_BELOW_PER_DAY_MINIMUM"),  # 0.01 USD a day
        (0, "BUDGET_BELOW_PER_DAY_MINIMUM"),
        (-1_000_000, "NEGATIVE_MONEY_AMOUNT"),
        (12_345_678, "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"),
    ):
        with pytest.raises(PermanentError) as refused:
            google.update_budget(US_ACCOUNT, target, daily_budget_micros=amount, validate_only=True)
        assert refused.value.code == code, amount
        assert refused.value.message
    with pytest.raises(PermanentError) as below:
        google.update_budget(US_ACCOUNT, target, daily_budget_micros=500_000)
    assert "1.00 USD" in below.value.message

    done = google.update_budget(US_ACCOUNT, target, daily_budget_micros=1_000_000)  # the minimum passes
    assert not done.validated_only
    assert google.get_campaign(US_ACCOUNT, "20000000003").daily_budget_micros == 1_000_000

    with pytest.raises(PermanentError) as no_budget:
        google.update_budget(US_ACCOUNT, ChangeTarget("ad_group", "40000000011"), daily_budget_micros=5_000_000)
    assert no_budget.value.code == "AD_GROUP_HAS_NO_BUDGET"


def test_the_demo_has_one_shared_budget_on_two_campaigns(google):
    rows = _gaql(
        google,
        "SELECT campaign_budget.id, campaign_budget.explicitly_shared, campaign_budget.reference_count "
        "FROM campaign_budget WHERE campaign_budget.explicitly_shared = TRUE",
    )
    assert len(rows) == 1 and rows[0].campaign_budget.reference_count >= 2


def test_a_total_budget_reads_with_its_end_and_remainder_and_is_checked(sandbox, google):
    campaign = google.get_campaign(UK_ACCOUNT, FLIGHT_CAMPAIGN)
    assert campaign.daily_budget_micros is None and campaign.budget_micros == 116_000_000 * 30
    assert campaign.end_time is not None and campaign.end_time.tzinfo is not None
    assert 0 < campaign.budget_remaining_micros <= campaign.budget_micros
    spent = campaign.budget_micros - campaign.budget_remaining_micros
    target = ChangeTarget("campaign", FLIGHT_CAMPAIGN, FLIGHT_CAMPAIGN, campaign.budget_external_id)

    with pytest.raises(PermanentError) as daily_on_total:
        google.update_budget(UK_ACCOUNT, target, daily_budget_micros=50_000_000)
    assert daily_on_total.value.code == "BUDGET_AMOUNT_MUST_BE_UNSET_FOR_CUSTOM_BUDGET_PERIOD"
    if spent > 30_000_000:  # above the flight's minimum (1 GBP a day): the spend rule speaks
        with pytest.raises(PermanentError) as below_spend:
            google.update_budget(UK_ACCOUNT, target, lifetime_budget_micros=spent - 10_000, validate_only=True)
        assert below_spend.value.code == "TOO_LOW"
    with pytest.raises(PermanentError) as too_small:
        google.update_budget(UK_ACCOUNT, target, lifetime_budget_micros=10_000_000, validate_only=True)
    assert too_small.value.code in ("BUDGET_BELOW_PER_DAY_MINIMUM", "TOO_LOW")

    new_total = campaign.budget_micros + 100_000_000
    update = google.update_budget(UK_ACCOUNT, target, lifetime_budget_micros=new_total)
    assert update.lifetime_budget_micros == new_total and update.daily_budget_micros is None
    assert google.get_campaign(UK_ACCOUNT, FLIGHT_CAMPAIGN).budget_micros == new_total

    daily = google.get_campaign(UK_ACCOUNT, "21000000003")
    daily_target = ChangeTarget("campaign", daily.external_id, daily.external_id, daily.budget_external_id)
    with pytest.raises(PermanentError) as total_on_daily:
        google.update_budget(UK_ACCOUNT, daily_target, lifetime_budget_micros=900_000_000)
    assert total_on_daily.value.code == "TOTAL_BUDGET_AMOUNT_MUST_BE_UNSET_FOR_BUDGET_PERIOD_DAILY"
