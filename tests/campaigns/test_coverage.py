"""Days before an account's first synced day are "no data" (null), never 0, in every API read."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns import services
from campaigns.models import AdAccount
from tests.campaigns.factories import AdAccountFactory, AdGroupFactory, CampaignFactory, add_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def new_account(today):
    """An account added today whose first sync has not run yet."""
    account = AdAccountFactory(name="New", time_zone="UTC")
    return account, CampaignFactory(account=account, name="Fresh")


def test_a_never_synced_account_shows_no_data_not_zeros(auth_client, new_account):
    _, campaign = new_account
    row = auth_client.get("/api/v1/campaigns/").json()["results"][0]
    assert row["data_from"] is None
    assert set(row["metrics"].values()) == {None}
    detail = auth_client.get(f"/api/v1/campaigns/{campaign.id}/").json()
    assert detail["data_from"] is None and detail["metrics"]["cost_micros"] is None
    series = auth_client.get(f"/api/v1/campaigns/{campaign.id}/metrics/").json()
    assert series["data_from"] is None and len(series["days"]) == 30
    assert all(not day["has_data"] and day["cost_micros"] is None for day in series["days"])
    assert auth_client.get("/api/v1/accounts/").json()[0]["data_from"] is None


def test_a_synced_day_without_activity_is_zero_and_an_earlier_day_is_null(auth_client, new_account, today):
    account, campaign = new_account
    # A sync read the last 5 days; the platform reported activity on 2 of them.
    services.account_data_read_from(account_id=account.pk, day=today - dt.timedelta(days=4))
    add_metrics(campaign, days=2, end=today, cost_micros=3_000_000)
    query = f"?date_from={today - dt.timedelta(days=9)}&date_to={today}"
    series = auth_client.get(f"/api/v1/campaigns/{campaign.id}/metrics/{query}").json()
    days = series["days"]
    assert [day["has_data"] for day in days] == [False] * 5 + [True] * 5
    assert [day["cost_micros"] for day in days] == [None] * 5 + [0, 0, 0, 3_000_000, 3_000_000]
    row = auth_client.get(f"/api/v1/campaigns/{query}").json()["results"][0]
    assert row["data_from"] == str(today - dt.timedelta(days=4)) and row["metrics"]["cost_micros"] == 6_000_000
    # A window wholly before the first synced day has no data at all.
    before = f"?date_from={today - dt.timedelta(days=20)}&date_to={today - dt.timedelta(days=10)}"
    row = auth_client.get(f"/api/v1/campaigns/{before}").json()["results"][0]
    assert row["data_from"] is None and row["metrics"]["clicks"] is None
    summary = auth_client.get(f"/api/v1/summary/{query}").json()["totals"]
    assert summary[0]["data_from"] == str(today - dt.timedelta(days=4)) and summary[0]["cost_micros"] == 6_000_000


def test_the_first_synced_day_only_moves_back(new_account, today):
    account, _ = new_account
    services.account_data_read_from(account_id=account.pk, day=today - dt.timedelta(days=3))
    services.account_data_read_from(account_id=account.pk, day=today)  # a later run reads recent days only
    assert AdAccount.objects.get(pk=account.pk).data_from == today - dt.timedelta(days=3)
    services.account_data_read_from(account_id=account.pk, day=today - dt.timedelta(days=89))  # the backfill
    assert AdAccount.objects.get(pk=account.pk).data_from == today - dt.timedelta(days=89)


def test_ad_groups_follow_the_same_rule(auth_client, new_account):
    _, campaign = new_account
    AdGroupFactory(campaign=campaign)
    row = auth_client.get(f"/api/v1/ad-groups/?campaign={campaign.id}").json()["results"][0]
    assert row["data_from"] is None and row["metrics"]["impressions"] is None
