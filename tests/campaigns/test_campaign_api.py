"""The unified campaign API: filters, ordering, metrics, bad input, query count, cache and ETag."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import selectors, services
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, add_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_platforms(today):
    """A Google account (USD) with three campaigns and a Meta account (EUR) with one."""
    google = AdAccountFactory(platform="google", name="Acme US", currency_code="USD")
    meta = AdAccountFactory(platform="meta", name="Acme EU", currency_code="EUR", time_zone="Europe/Berlin")
    brand = CampaignFactory(account=google, name="Brand", daily_budget_micros=50_000_000)
    generic = CampaignFactory(account=google, name="Generic", status="paused")
    shopping = CampaignFactory(account=google, name="Shopping")
    retarget = CampaignFactory(account=meta, name="Retargeting")
    add_metrics(brand, days=10, end=today, cost_micros=2_000_000, clicks=20, conversions=2, value_micros=10_000_000)
    add_metrics(generic, days=10, end=today, cost_micros=5_000_000, clicks=5, conversions=1, value_micros=1_000_000)
    add_metrics(shopping, days=10, end=today, cost_micros=1_000_000, clicks=50, conversions=0, value_micros=0)
    add_metrics(retarget, days=40, end=today, cost_micros=3_000_000, clicks=1, conversions=1, value_micros=9_000_000)
    return {
        "google": google,
        "meta": meta,
        "brand": brand,
        "generic": generic,
        "shopping": shopping,
        "retarget": retarget,
    }


def test_requires_a_token(api_client):
    response = api_client.get("/api/v1/campaigns/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_lists_both_platforms_with_window_metrics(auth_client, two_platforms):
    body = auth_client.get("/api/v1/campaigns/").json()
    assert body["count"] == 4
    by_name = {row["name"]: row for row in body["results"]}
    brand = by_name["Brand"]
    assert brand["platform"] == "google"
    assert brand["currency_code"] == "USD"
    assert brand["account"] == {"id": two_platforms["google"].id, "name": "Acme US", "platform": "google"}
    assert brand["daily_budget_micros"] == 50_000_000
    assert brand["metrics"]["cost_micros"] == 20_000_000
    assert brand["metrics"]["clicks"] == 200
    assert brand["metrics"]["conversions"] == 20
    assert brand["metrics"]["ctr"] == 0.2
    assert brand["metrics"]["cpc_micros"] == 100_000
    assert brand["metrics"]["cpa_micros"] == 1_000_000
    assert brand["metrics"]["roas"] == 5.0
    # Default window is 30 days: the Meta campaign's 40 days count only 30.
    assert by_name["Retargeting"]["metrics"]["cost_micros"] == 90_000_000
    assert by_name["Shopping"]["metrics"]["cpa_micros"] is None  # no conversions: no CPA


def test_date_range_limits_metrics(auth_client, two_platforms, today):
    start = (today - dt.timedelta(days=1)).isoformat()
    body = auth_client.get(f"/api/v1/campaigns/?date_from={start}&date_to={today.isoformat()}").json()
    brand = next(row for row in body["results"] if row["name"] == "Brand")
    assert brand["metrics"]["cost_micros"] == 4_000_000


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("platform=meta", {"Retargeting"}),
        ("status=paused", {"Generic"}),
        ("search=shop", {"Shopping"}),
    ],
)
def test_filters(auth_client, two_platforms, query, expected):
    names = {row["name"] for row in auth_client.get(f"/api/v1/campaigns/?{query}").json()["results"]}
    assert names == expected


def test_account_filter(auth_client, two_platforms):
    body = auth_client.get(f"/api/v1/campaigns/?account={two_platforms['google'].id}").json()
    assert {row["name"] for row in body["results"]} == {"Brand", "Generic", "Shopping"}


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("name", ["Brand", "Generic", "Retargeting", "Shopping"]),
        ("-cost", ["Retargeting", "Generic", "Brand", "Shopping"]),
        ("clicks", ["Retargeting", "Generic", "Brand", "Shopping"]),
        ("-conversions", ["Retargeting", "Brand", "Generic", "Shopping"]),
        ("cpa", ["Brand", "Retargeting", "Generic", "Shopping"]),  # no conversions → last
        ("-roas", ["Brand", "Retargeting", "Generic", "Shopping"]),
    ],
)
def test_ordering(auth_client, two_platforms, ordering, expected):
    rows = auth_client.get(f"/api/v1/campaigns/?ordering={ordering}").json()["results"]
    assert [row["name"] for row in rows] == expected


def test_pagination(auth_client, two_platforms):
    first = auth_client.get("/api/v1/campaigns/?page_size=3").json()
    assert len(first["results"]) == 3 and first["next"] and first["previous"] is None
    second = auth_client.get("/api/v1/campaigns/?page_size=3&page=2").json()
    assert [row["name"] for row in second["results"]] == ["Shopping"] and second["next"] is None
    assert auth_client.get("/api/v1/campaigns/?page_size=3&page=3").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date_from=2026-13-01", "date_from"),
        ("date_from=2026-05-02&date_to=2026-05-01", "date_from"),
        ("date_from=2024-01-01&date_to=2026-01-01", "date_to"),
        ("platform=tiktok", "platform"),
        ("status=archived", "status"),
        ("ordering=budget", "ordering"),
        ("page_size=501", "page_size"),
        ("account=abc", "account"),
    ],
)
def test_bad_input_is_400_naming_the_field(auth_client, query, field):
    response = auth_client.get(f"/api/v1/campaigns/?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"]


def test_alias_path_serves_the_same_list(auth_client, two_platforms):
    assert auth_client.get("/api/campaigns").json()["count"] == 4


def test_query_count_is_fixed_as_pages_grow(auth_client, two_platforms, today, django_assert_max_num_queries):
    def queries_for(page_size: int) -> int:
        services.campaign_cache_invalidate()
        with CaptureQueriesContext(connection) as ctx:
            assert auth_client.get(f"/api/v1/campaigns/?page_size={page_size}&ordering=-cost").status_code == 200
        return len([q for q in ctx.captured_queries if "campaigns_campaign" in q["sql"]])

    small = queries_for(1)
    account = two_platforms["google"]
    for _ in range(30):
        add_metrics(CampaignFactory(account=account), days=5, end=today)
    large = queries_for(30)
    assert small == large == 2  # one for the page, one for the count


def test_name_order_page_comes_with_its_totals_in_one_query_and_agrees_with_the_metric_path(two_platforms, today):
    CampaignFactory(account=two_platforms["meta"], name="Zeta, no metrics yet")
    for descending in (False, True):
        filters = selectors.CampaignFilters(
            date_from=today - dt.timedelta(days=29), date_to=today, ordering="-name" if descending else "name"
        )
        with CaptureQueriesContext(connection) as ctx:
            page = selectors.campaign_page(filters=filters, offset=1, limit=3)
        assert len(ctx.captured_queries) == 1  # the page with its window totals
        # Same rows, values and order as the correlated-subquery path that metric orderings use.
        assert page == list(selectors.campaign_list(filters=filters)[1:4])
    assert [row["name"] for row in page] == ["Shopping", "Retargeting", "Generic"]


def test_cached_until_a_sync_commits(auth_client, two_platforms, django_capture_on_commit_callbacks):
    first = auth_client.get("/api/v1/campaigns/")
    assert first["X-Cache"] == "miss"
    two_platforms["brand"].__class__.objects.filter(pk=two_platforms["brand"].pk).update(name="Brand renamed")
    cached = auth_client.get("/api/v1/campaigns/")
    assert cached["X-Cache"] == "hit"
    assert "Brand renamed" not in cached.content.decode()
    services.campaign_cache_invalidate()  # what a committed sync does
    fresh = auth_client.get("/api/v1/campaigns/")
    assert fresh["X-Cache"] == "miss"
    assert "Brand renamed" in fresh.content.decode()


def test_etag_and_304(auth_client, two_platforms):
    first = auth_client.get("/api/v1/campaigns/")
    etag = first["ETag"]
    again = auth_client.get("/api/v1/campaigns/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    other = auth_client.get("/api/v1/campaigns/", HTTP_IF_NONE_MATCH='"stale"')
    assert other.status_code == 200


def test_detail_and_daily_series(auth_client, two_platforms):
    brand = two_platforms["brand"]
    detail = auth_client.get(f"/api/v1/campaigns/{brand.id}/").json()
    assert detail["name"] == "Brand" and detail["metrics"]["cost_micros"] == 20_000_000
    series = auth_client.get(f"/api/v1/campaigns/{brand.id}/metrics/").json()
    assert series["currency_code"] == "USD"
    # Every day of the default 30-day range; the 20 before the first synced day are "no data".
    days = series["days"]
    assert len(days) == 30 and days[0]["date"] < days[-1]["date"]
    assert series["data_from"] == days[20]["date"] == detail["data_from"]
    assert [day["has_data"] for day in days] == [False] * 20 + [True] * 10
    assert days[0]["cost_micros"] is None and days[-1]["cost_micros"] == 2_000_000
    missing = auth_client.get("/api/v1/campaigns/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_summary_never_adds_currencies(auth_client, two_platforms):
    totals = auth_client.get("/api/v1/summary/").json()["totals"]
    assert [(t["platform"], t["currency_code"]) for t in totals] == [("google", "USD"), ("meta", "EUR")]
    usd = totals[0]
    assert usd["cost_micros"] == (2_000_000 + 5_000_000 + 1_000_000) * 10
    assert usd["campaigns"] == 3
    assert totals[1]["cost_micros"] == 90_000_000


def test_accounts_and_manual_sync(auth_client, client_with_role, two_platforms, django_capture_on_commit_callbacks):
    accounts = auth_client.get("/api/v1/accounts/").json()
    assert {a["name"] for a in accounts} == {"Acme US", "Acme EU"}
    refused = auth_client.post(f"/api/v1/accounts/{two_platforms['google'].id}/sync/")
    assert refused.status_code == 403 and "advertiser" in refused.json()["error"]["message"]
    auth_client = client_with_role("advertiser")
    with django_capture_on_commit_callbacks() as callbacks:
        response = auth_client.post(f"/api/v1/accounts/{two_platforms['google'].id}/sync/")
    assert response.status_code == 202
    run = response.json()
    assert run["status"] == "queued" and run["trigger"] == "manual"
    assert len(callbacks) == 1  # enqueued only after the commit
    runs = auth_client.get("/api/v1/sync-runs/").json()
    assert runs["count"] == 1 and runs["results"][0]["id"] == run["id"]
    assert auth_client.post("/api/v1/accounts/999999/sync/").status_code == 404


def test_a_time_is_written_the_same_way_in_the_list_and_the_detail(auth_client, today):
    campaign = CampaignFactory(synced_at=dt.datetime(2026, 6, 17, 14, 30, tzinfo=dt.UTC))

    listed = auth_client.get("/api/v1/campaigns/").json()["results"][0]["synced_at"]
    detail = auth_client.get(f"/api/v1/campaigns/{campaign.pk}/").json()["synced_at"]

    assert listed == detail == "2026-06-17T14:30:00Z"


def test_a_sync_run_that_gave_up_has_no_retry_due(db):
    account = AdAccountFactory()
    run = services.sync_run_create(account=account, enqueue=False)
    services.sync_run_retry_at(run=run, delay_seconds=60)

    services.sync_run_give_up(run=run)

    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert run.next_attempt_at is None
