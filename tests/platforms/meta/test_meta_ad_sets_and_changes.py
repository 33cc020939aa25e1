"""Ad sets, their insights, date presets, and status / budget changes on the Graph emulator,
through the official SDK (and, for what the SDK cannot send wrong, plain HTTP)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from facebook_business.adobjects.campaign import Campaign

from platforms.base import ChangeTarget, PermanentError
from platforms.meta import MetaPlatform
from platforms.sandbox import credentials
from platforms.sandbox.meta import MetaSandbox


def _campaign(platform: MetaPlatform, account, name: str):
    return next(c for c in platform.list_campaigns(account) if c.name == name)


def _today() -> datetime:
    return datetime.now(ZoneInfo("Europe/Berlin")).date()


def test_ad_sets_carry_their_budgets_where_the_campaign_has_none(platform, eur_account):
    ad_sets = list(platform.list_ad_groups(eur_account))
    campaigns = {c.external_id: c for c in platform.list_campaigns(eur_account)}
    assert {a.campaign_external_id for a in ad_sets} == set(campaigns)

    abo = _campaign(platform, eur_account, "Interest Tests - Ad Set Budgets")
    assert (abo.budget_level, abo.daily_budget_micros) == ("ad_set", None)
    abo_sets = [a for a in ad_sets if a.campaign_external_id == abo.external_id]
    assert [a.daily_budget_micros for a in abo_sets] == [20_000_000, 15_000_000, 10_000_000]
    assert [a.status for a in abo_sets] == ["enabled", "enabled", "paused"]

    flights = [a for a in ad_sets if a.lifetime_budget_micros]
    assert len(flights) == 2
    for ad_set in flights:
        assert ad_set.end_time is not None and ad_set.end_time.date() >= _today()
        assert 0 < ad_set.budget_remaining_micros <= ad_set.lifetime_budget_micros

    cbo = _campaign(platform, eur_account, "Brand - Always On")
    cbo_sets = [a for a in ad_sets if a.campaign_external_id == cbo.external_id]
    assert cbo.budget_level == "campaign" and len(cbo_sets) == 3
    assert all(a.daily_budget_micros is None and a.lifetime_budget_micros is None for a in cbo_sets)

    lifetime = _campaign(platform, eur_account, "Advantage+ Shopping - Q4 Flight")
    assert lifetime.budget_micros == 3_000_000_000 and lifetime.end_time is not None
    assert 0 < lifetime.budget_remaining_micros < lifetime.budget_micros
    assert platform.get_ad_group(eur_account, abo_sets[0].external_id) == abo_sets[0]


def test_ad_set_insights_add_up_to_their_campaign(platform, eur_account):
    day = _today() - timedelta(days=2)
    campaigns = {r.campaign_external_id: r for r in platform.iter_daily_metrics(eur_account, day, day)}
    sums: dict[str, list] = {}
    for row in platform.iter_ad_group_daily_metrics(eur_account, day, day):
        total = sums.setdefault(row.campaign_external_id, [0, 0, 0])
        total[0] += row.impressions
        total[1] += row.clicks
        total[2] += row.cost_micros
    assert set(sums) == set(campaigns)
    for campaign_id, (impressions, clicks, cost) in sums.items():
        row = campaigns[campaign_id]
        assert (impressions, clicks, cost) == (row.impressions, row.clicks, row.cost_micros)


def test_a_campaign_insights_edge_with_date_presets(platform, eur_account):
    brand = _campaign(platform, eur_account, "Brand - Always On")
    node = Campaign(fbid=brand.external_id, api=platform._api)
    today = _today()

    yesterday = list(node.get_insights(fields=["campaign_id", "spend"], params={"date_preset": "yesterday"}))
    assert len(yesterday) == 1 and yesterday[0]["date_start"] == (today - timedelta(days=1)).isoformat()
    week = list(
        node.get_insights(fields=["spend"], params={"date_preset": "last_7d", "time_increment": 1, "limit": 50})
    )
    assert [r["date_start"] for r in week] == [(today - timedelta(days=n)).isoformat() for n in range(7, 0, -1)]
    total = list(node.get_insights(fields=["spend"], params={"date_preset": "last_7d"}))
    assert len(total) == 1 and total[0]["date_stop"] == (today - timedelta(days=1)).isoformat()
    assert abs(sum(float(r["spend"]) for r in week) - float(total[0]["spend"])) < 0.01
    today_rows = list(node.get_insights(fields=["spend"], params={"date_preset": "today"}))
    assert today_rows[0]["date_start"] == today.isoformat()
    by_adset = list(
        node.get_insights(fields=["adset_id", "spend"], params={"level": "adset", "date_preset": "maximum"})
    )
    assert len(by_adset) == 3


def _graph(sandbox: MetaSandbox, method: str, path: str, **params) -> dict:
    response = requests.request(
        method,
        f"{sandbox.url}/v26.0/{path}",
        params={"access_token": credentials.META_ACCESS_TOKEN, **params},
        timeout=5,
    )
    return response.json()


def test_unknown_fields_and_parameters_and_presets_are_refused(sandbox, platform, eur_account):
    brand = _campaign(platform, eur_account, "Brand - Always On")
    for path in (
        brand.external_id,
        f"act_{eur_account.external_id}/campaigns",
        f"act_{eur_account.external_id}/adsets",
    ):
        error = _graph(sandbox, "GET", path, fields="id,not_a_field")["error"]
        assert error["code"] == 100 and "nonexisting field (not_a_field)" in error["message"]
    bad_insight = _graph(sandbox, "GET", f"{brand.external_id}/insights", fields="spend,bogus")["error"]
    assert bad_insight["code"] == 100
    preset = _graph(sandbox, "GET", f"{brand.external_id}/insights", date_preset="last_forever")["error"]
    assert preset["code"] == 100 and "date_preset" in preset["message"]

    refused = _graph(sandbox, "POST", brand.external_id, colour="blue")["error"]
    assert refused["code"] == 100 and "colour" in refused["error_user_msg"]
    assert sandbox.state.campaign(brand.external_id).status == "ACTIVE"


@pytest.mark.parametrize("level", ["campaign", "ad_group"])
def test_pause_and_enable_apply_for_real_and_validate_only_changes_nothing(sandbox, platform, eur_account, level):
    brand = _campaign(platform, eur_account, "Brand - Always On")
    object_id = brand.external_id
    if level == "ad_group":
        object_id = next(a.external_id for a in platform.list_ad_groups(eur_account) if a.status == "enabled")
    target = ChangeTarget(level, object_id, brand.external_id if level == "campaign" else "")
    raw = sandbox.state.campaign if level == "campaign" else sandbox.state.adset

    checked = platform.update_status(eur_account, target, "paused", validate_only=True)
    assert checked.validated_only and raw(object_id).status == "ACTIVE"

    platform.update_status(eur_account, target, "paused")
    assert raw(object_id).status == "PAUSED"
    platform.update_status(eur_account, target, "enabled")
    assert raw(object_id).status == "ACTIVE"


def test_budget_refusals_carry_meta_codes(sandbox, platform, eur_account):
    brand = _campaign(platform, eur_account, "Brand - Always On")
    abo_set = next(
        a
        for a in platform.list_ad_groups(eur_account)
        if a.daily_budget_micros == 20_000_000  # "Interests - Running"
    )
    cbo_set = next(a for a in platform.list_ad_groups(eur_account) if a.campaign_external_id == brand.external_id)
    flight_set = next(a for a in platform.list_ad_groups(eur_account) if a.lifetime_budget_micros)
    cases = [
        (ChangeTarget("campaign", brand.external_id), {"daily_budget_micros": 500_000}, "100/1885272"),  # 0.50 EUR
        (ChangeTarget("campaign", brand.external_id), {"daily_budget_micros": 0}, "100/1885272"),
        (ChangeTarget("ad_group", abo_set.external_id), {"daily_budget_micros": 10_000}, "100/1885272"),
        (ChangeTarget("ad_group", cbo_set.external_id), {"daily_budget_micros": 30_000_000}, "100/1885621"),
        (ChangeTarget("ad_group", flight_set.external_id), {"lifetime_budget_micros": 10_000}, "100/1885650"),
        (ChangeTarget("campaign", brand.external_id), {"lifetime_budget_micros": 900_000_000}, "100"),
    ]
    for target, amount, code in cases:
        with pytest.raises(PermanentError) as refused:
            platform.update_budget(eur_account, target, validate_only=True, **amount)
        assert refused.value.code == code, (target, amount)
        assert refused.value.message
    assert sandbox.state.campaign(brand.external_id).daily_budget == 5_000

    checked = platform.update_budget(
        eur_account, ChangeTarget("ad_group", abo_set.external_id), daily_budget_micros=25_000_000, validate_only=True
    )
    assert checked.validated_only and sandbox.state.adset(abo_set.external_id).daily_budget == 2_000

    done = platform.update_budget(
        eur_account, ChangeTarget("ad_group", abo_set.external_id), daily_budget_micros=25_000_000
    )
    assert done.daily_budget_micros == 25_000_000 and done.campaign_external_id == abo_set.campaign_external_id
    assert platform.get_ad_group(eur_account, abo_set.external_id).daily_budget_micros == 25_000_000

    new_lifetime = flight_set.lifetime_budget_micros + 50_000_000
    raised = platform.update_budget(
        eur_account, ChangeTarget("ad_group", flight_set.external_id), lifetime_budget_micros=new_lifetime
    )
    assert raised.lifetime_budget_micros == new_lifetime
    assert sandbox.state.adset(flight_set.external_id).lifetime_budget == new_lifetime // 10_000
