"""What one campaign list request costs in round trips, and that nothing it saves goes stale.

A request reads the user with their roles in one query, the sync generation with every cached
value it may need in one Redis read (its answer, its filter's count, the accounts' time zones),
and its page with the page's totals in one query. Each saving is checked against what it must
not break: a revoked role, a new account's time zone, a sync that commits.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import services
from campaigns.access import VIEWER, account_access_grant, account_access_revoke
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, add_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(today):
    google = AdAccountFactory(platform="google", name="Acme US", time_zone="America/New_York")
    meta = AdAccountFactory(platform="meta", name="Acme EU", time_zone="Europe/Berlin")
    other = AdAccountFactory(platform="google", name="Not theirs", time_zone="America/New_York")
    for account, names in ((google, ("Brand", "Generic")), (meta, ("Retargeting",)), (other, ("Hidden",))):
        for name in names:
            add_metrics(CampaignFactory(account=account, name=name), days=5, end=today, clicks=3)
    return {"google": google, "meta": meta, "other": other}


@pytest.fixture
def analyst(accounts):
    """Viewer on the Google account through their own grant, on the Meta one through a group."""
    user = get_user_model().objects.create_user("per-account", "pa@example.com", "a-long-password-1")
    account_access_grant(user=user, account=accounts["google"], role=VIEWER)
    team = Group.objects.create(name="EU team")
    team.user_set.add(user)
    account_access_grant(group=team, account=accounts["meta"], role=VIEWER)
    return user


@pytest.fixture
def client(analyst, jwt_client_for):
    return jwt_client_for(analyst)


def _sql_of(ctx: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in ctx.captured_queries]


def test_the_user_and_their_roles_are_one_query(client, accounts):
    with CaptureQueriesContext(connection) as ctx:
        body = client.get("/api/v1/campaigns/").json()
    assert sorted(row["name"] for row in body["results"]) == ["Brand", "Generic", "Retargeting"]
    sql = _sql_of(ctx)
    user_reads = [q for q in sql if "auth_user" in q]
    assert len(user_reads) == 1 and "campaigns_accountaccess" in user_reads[0]
    # No second read of the grants: the group's grant came with the user too.
    assert not [q for q in sql if q.startswith('SELECT "campaigns_accountaccess"')]


def test_a_cold_list_is_four_queries_and_the_next_page_two(client, accounts):
    with CaptureQueriesContext(connection) as cold:
        first = client.get("/api/v1/campaigns/?page_size=2")
    assert first.status_code == 200 and first["X-Cache"] == "miss"
    # The user with their roles, the accounts' time zones, the count, the page with its totals.
    assert len(cold.captured_queries) == 4, _sql_of(cold)
    with CaptureQueriesContext(connection) as next_page:
        second = client.get("/api/v1/campaigns/?page_size=2&page=2&date_from=2026-01-01")
    assert second.status_code == 200 and second["X-Cache"] == "miss"
    # Another page and window of the same filter: its count and the time zones are cached.
    assert len(next_page.captured_queries) == 2, _sql_of(next_page)
    assert second.json()["count"] == first.json()["count"] == 3
    assert [row["name"] for row in second.json()["results"]] == ["Retargeting"]
    with CaptureQueriesContext(connection) as cached:
        assert client.get("/api/v1/campaigns/?page_size=2")["X-Cache"] == "hit"
    assert len(cached.captured_queries) == 1  # the user with their roles


def test_a_revoked_role_ends_at_the_next_request(client, analyst, accounts):
    assert client.get("/api/v1/campaigns/").json()["count"] == 3
    account_access_revoke(user=analyst, account=accounts["google"])
    body = client.get("/api/v1/campaigns/").json()
    assert [row["name"] for row in body["results"]] == ["Retargeting"]
    assert client.get(f"/api/v1/campaigns/?account={accounts['google'].pk}").json()["count"] == 0


def test_a_count_is_recounted_after_a_sync_commits(client, accounts, django_capture_on_commit_callbacks):
    assert client.get("/api/v1/campaigns/?page_size=1").json()["count"] == 3
    CampaignFactory(account=accounts["google"], name="Added by a sync")
    assert client.get("/api/v1/campaigns/?page_size=1&page=2").json()["count"] == 3  # still this generation
    services.campaign_cache_invalidate()  # what a committed sync does
    assert client.get("/api/v1/campaigns/?page_size=1&page=3").json()["count"] == 4


@pytest.mark.clock("2026-06-17T12:00:00+00:00")  # 18 June already on Kiritimati (UTC+14)
def test_a_new_accounts_time_zone_moves_the_default_window_at_once(
    client, analyst, accounts, django_capture_on_commit_callbacks
):
    assert client.get("/api/v1/campaigns/").json()["results"][0]["date_to"] == "2026-06-17"
    with django_capture_on_commit_callbacks(execute=True):
        kiritimati = AdAccountFactory(platform="google", name="Line Islands", time_zone="Pacific/Kiritimati")
    account_access_grant(user=analyst, account=kiritimati, role=VIEWER)
    assert client.get("/api/v1/campaigns/").json()["results"][0]["date_to"] == "2026-06-18"


def test_a_lost_generation_never_restarts_at_a_number_already_used():
    services.campaign_cache_invalidate()
    used = services.campaign_cache_generation()
    cache.clear()  # Redis restarted, or evicted the key
    assert services.campaign_cache_generation() > used


def test_a_deep_page_sums_only_its_own_rows(client, accounts, today):
    for n in range(30):
        add_metrics(CampaignFactory(account=accounts["google"], name=f"Z {n:02d}"), days=3, end=today, clicks=1)
    with CaptureQueriesContext(connection) as ctx:
        body = client.get("/api/v1/campaigns/?page_size=5&page=6").json()
    assert [row["name"] for row in body["results"]] == [f"Z {n:02d}" for n in range(22, 27)]
    assert {row["metrics"]["clicks"] for row in body["results"]} == {3}
    page_sql = next(q for q in _sql_of(ctx) if "campaigns_dailymetric" in q)
    # The page's ids are chosen first (LIMIT/OFFSET inside), the window summed for those only.
    assert "unnest(ARRAY(" in page_sql and "OFFSET 25" in page_sql
    assert dt.date.fromisoformat(body["results"][0]["date_to"]) >= today
