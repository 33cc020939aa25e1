"""The page PostgreSQL writes as JSON equals the page the Python rows give, value for value.

The campaign list answers with the database's JSON (campaigns.json_pages); the Python rows
(selectors.campaign_page + api.campaign_row) answer on other databases and for the detail
view. Both are built here for the same filters and compared after a JSON round trip, over
what makes them differ if anything does: rounding ties, no data, no clicks or conversions,
fractional conversions, timestamps with and without microseconds, every ordering.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest

from campaigns import json_pages, selectors
from campaigns.api import campaign_row
from campaigns.models import Campaign, DailyMetric
from tests.campaigns.factories import AdAccountFactory, CampaignFactory

pytestmark = pytest.mark.django_db


def _day(campaign, day, *, impressions, clicks, cost, conversions, value):
    DailyMetric.objects.create(
        campaign=campaign,
        date=day,
        impressions=impressions,
        clicks=clicks,
        cost_micros=cost,
        conversions=Decimal(conversions),
        conversion_value_micros=value,
    )


@pytest.fixture
def mixed(today):
    synced = AdAccountFactory(platform="google", name="Synced", currency_code="USD")
    synced.data_from = today - dt.timedelta(days=20)
    synced.save()
    never = AdAccountFactory(platform="meta", name="Never synced", currency_code="EUR", time_zone="Europe/Berlin")
    never.data_from = None
    never.save()
    whole_second = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    ties = CampaignFactory(account=synced, name="Ties", daily_budget_micros=7_000_000)
    # clicks / impressions = 0.0078125 and value / cost = 0.00125: halfway at 6 and 4 decimals.
    _day(ties, today, impressions=128, clicks=1, cost=800, conversions="3.0000", value=1)
    fractional = CampaignFactory(account=synced, name="Fractional conversions", budget_micros=90_000_000)
    _day(fractional, today, impressions=3, clicks=2, cost=1_000_001, conversions="0.3333", value=2_000_003)
    _day(fractional, today - dt.timedelta(days=1), impressions=0, clicks=0, cost=0, conversions="0", value=0)
    CampaignFactory(account=synced, name="Nothing in the window")
    Campaign.objects.filter(name="Nothing in the window").update(synced_at=whole_second)
    no_clicks = CampaignFactory(account=synced, name="Impressions only")
    _day(no_clicks, today, impressions=1000, clicks=0, cost=0, conversions="0", value=0)
    CampaignFactory(account=never, name='Ünïcödé "quoted" \\ name')
    CampaignFactory(account=never, name="Never synced, no data")
    return {"synced": synced, "never": never}


def _python_page(filters, offset, limit):
    rows = selectors.campaign_page(filters=filters, offset=offset, limit=limit)
    return orjson.loads(
        orjson.dumps([campaign_row(row, filters.date_from, filters.date_to) for row in rows], option=orjson.OPT_UTC_Z)
    )


@pytest.mark.parametrize("ordering", ["name", "-name", "cost", "-cost", "clicks", "conversions", "cpa", "-roas"])
def test_the_database_page_equals_the_python_page(mixed, today, ordering):
    assert json_pages.builds_json()
    for date_from, date_to in ((today - dt.timedelta(days=29), today), (today - dt.timedelta(days=60), today)):
        filters = selectors.CampaignFilters(date_from=date_from, date_to=date_to, ordering=ordering)
        for offset, limit in ((0, 50), (1, 3), (5, 10), (50, 10)):
            database = orjson.loads(json_pages.campaign_page_json(filters=filters, offset=offset, limit=limit))
            assert database == _python_page(filters, offset, limit)
    assert len(database) == 0  # the last one asked past the end


def test_the_values_that_could_differ(mixed, today):
    filters = selectors.CampaignFilters(date_from=today - dt.timedelta(days=29), date_to=today)
    page = {
        row["name"]: row for row in orjson.loads(json_pages.campaign_page_json(filters=filters, offset=0, limit=50))
    }
    ties = page["Ties"]["metrics"]
    assert ties["ctr"] == 0.007813 and ties["roas"] == 0.0013  # half up, exactly
    assert ties["cpc_micros"] == 800 and ties["cpa_micros"] == 266
    fractional = page["Fractional conversions"]["metrics"]
    assert (
        fractional["conversions"] == 0.3333 and fractional["cpa_micros"] == 3_000_303
    )  # 1,000,001 / 0.3333 = 3,000,303.03
    assert fractional["ctr"] == 0.666667 and fractional["roas"] == 2.0
    assert page["Impressions only"]["metrics"]["cpc_micros"] is None
    assert page["Impressions only"]["metrics"]["ctr"] == 0.0
    assert page["Nothing in the window"]["metrics"]["clicks"] == 0
    assert page["Nothing in the window"]["synced_at"] == "2026-05-01T12:00:00Z"
    assert page["Never synced, no data"]["data_from"] is None
    assert set(page["Never synced, no data"]["metrics"].values()) == {None}
    assert page['Ünïcödé "quoted" \\ name']["currency_code"] == "EUR"
    assert page["Ties"]["date_to"] == today.isoformat()


def test_scoped_and_filtered_pages_hold_only_their_rows(mixed, today):
    filters = selectors.CampaignFilters(
        date_from=today - dt.timedelta(days=29),
        date_to=today,
        visible_account_ids=frozenset({mixed["synced"].pk}),
        search="ti",
    )
    names = [row["name"] for row in orjson.loads(json_pages.campaign_page_json(filters=filters, offset=0, limit=50))]
    assert names == ["Fractional conversions", "Ties"]
    nobody = selectors.CampaignFilters(date_from=today, date_to=today, visible_account_ids=frozenset())
    assert json_pages.campaign_page_json(filters=nobody, offset=0, limit=50) == "[]"
