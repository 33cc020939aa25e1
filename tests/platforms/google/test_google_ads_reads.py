"""Reads through the official client against the emulator, over TLS on real sockets."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.oauth2.credentials import Credentials
from google_sandbox_support import UK_ACCOUNT, US_ACCOUNT, sandbox_config

from platforms.base import AdPlatform, AuthError, PermanentError
from platforms.sandbox.google import GoogleSandboxData
from platforms.sandbox.google.data import MANAGER_CUSTOMER_ID, SandboxCustomer, daily_metrics


def test_adapter_satisfies_the_protocol(google):
    assert isinstance(google, AdPlatform)
    assert google.platform == "google"


def test_check_credentials_runs_the_refresh_token_flow(sandbox, google):
    google.check_credentials()

    call = sandbox.state.calls[-1]
    assert (call.service, call.method, call.status) == ("CustomerService", "ListAccessibleCustomers", "OK")
    assert call.developer_token_sent


def test_list_accounts_returns_the_clients_under_the_manager(sandbox, google):
    accounts = google.list_accounts()

    assert sorted(accounts, key=lambda a: a.external_id) == [US_ACCOUNT, UK_ACCOUNT]
    assert all(not a.is_manager and a.manager_customer_id == str(MANAGER_CUSTOMER_ID) for a in accounts)
    search = sandbox.state.calls[-1]
    assert (search.customer_id, search.login_customer_id) == ("1000000001", "1000000001")


def test_campaigns_carry_budgets_statuses_and_the_shared_flag(sandbox, google):
    campaigns = list(google.list_campaigns(US_ACCOUNT))

    assert len(campaigns) == 10
    assert Counter(c.status for c in campaigns) == {"enabled": 7, "paused": 2, "removed": 1}
    shared = [c for c in campaigns if c.budget_is_shared]
    assert [c.name for c in shared] == ["Brand - Search", "Generic - Search"]
    assert len({c.budget_external_id for c in shared}) == 1
    assert shared[0].daily_budget_micros == 150_000_000
    own_budgets = [c.budget_external_id for c in campaigns if not c.budget_is_shared]
    assert len(set(own_budgets)) == 8 and "" not in own_budgets
    assert all(c.daily_budget_micros and c.daily_budget_micros % 1_000_000 == 0 for c in campaigns)
    assert all(c.budget_micros is None for c in campaigns)  # daily budgets, no total amount
    # The client account was reached through its manager, as login-customer-id.
    assert sandbox.state.calls[-1].login_customer_id == "1000000001"


def test_get_campaign_reads_one_campaign_and_refuses_an_unknown_one(google):
    campaign = google.get_campaign(US_ACCOUNT, "20000000004")
    assert (campaign.name, campaign.status) == ("Remarketing - Display", "paused")

    with pytest.raises(PermanentError) as error:
        google.get_campaign(US_ACCOUNT, "20000009999")
    assert error.value.code == "NOT_FOUND"


def test_metrics_stream_across_several_batches(start_sandbox, make_adapter):
    sandbox = start_sandbox(GoogleSandboxData.scaled(campaigns=250, days=40, stream_batch_size=1_000))
    google = make_adapter(sandbox)
    yesterday = datetime.now(ZoneInfo(US_ACCOUNT.time_zone)).date() - timedelta(days=1)
    first = yesterday - timedelta(days=29)

    rows = list(google.iter_daily_metrics(US_ACCOUNT, first, yesterday))

    assert len(rows) == 250 * 30
    assert len({(r.campaign_external_id, r.date) for r in rows}) == len(rows)
    assert {r.date for r in rows} == {first + timedelta(days=n) for n in range(30)}
    stream_call = sandbox.state.calls[-1]
    assert (stream_call.method, stream_call.messages) == ("SearchStream", 8)  # 7,500 rows / 1,000
    for row in rows[::997]:  # every value is what the emulator's data function says
        expected = daily_metrics(int(row.campaign_external_id), row.date)
        assert (row.impressions, row.clicks, row.cost_micros) == (
            expected.impressions,
            expected.clicks,
            expected.cost_micros,
        )
        assert float(row.conversions) == expected.conversions
        assert row.conversion_value_micros == round(expected.conversions_value * 1_000_000)


def test_search_pages_follow_next_page_token_in_the_official_pager(start_sandbox):
    """The adapter streams, but the emulator's Search paging must hold for other callers."""
    sandbox = start_sandbox(GoogleSandboxData.scaled(campaigns=95, days=5, search_page_size=20))
    config = sandbox_config(sandbox)
    credentials = Credentials(
        token=None,
        refresh_token=config.refresh_token,
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_uri=config.token_uri,
    )
    client = GoogleAdsClient(
        credentials=credentials,
        endpoint=config.endpoint,
        login_customer_id=config.login_customer_id,
        version="v26",
        use_proto_plus=True,
    )
    service = client.get_service("GoogleAdsService")
    try:
        rows = list(service.search(customer_id="1234567890", query="SELECT campaign.id FROM campaign"))
    finally:
        service.transport.close()

    assert len(rows) == 95
    assert len({r.campaign.id for r in rows}) == 95
    searches = [c for c in sandbox.state.calls if c.method == "Search"]
    assert len(searches) == 5  # 20 + 20 + 20 + 20 + 15


def test_metric_dates_are_days_in_each_account_time_zone(start_sandbox, make_adapter):
    # Kiritimati (UTC+14) and Pago Pago (UTC-11) are always on different calendar days.
    ahead = SandboxCustomer(3000000001, "Ahead", "USD", "Pacific/Kiritimati", manager_id=MANAGER_CUSTOMER_ID)
    behind = SandboxCustomer(3000000002, "Behind", "USD", "Pacific/Pago_Pago", manager_id=MANAGER_CUSTOMER_ID)
    manager = GoogleSandboxData().customers[0]
    sandbox = start_sandbox(GoogleSandboxData(customers=(manager, ahead, behind), campaigns_per_customer=2, days=10))
    google = make_adapter(sandbox)
    accounts = {a.external_id: a for a in google.list_accounts()}
    assert accounts["3000000001"].time_zone == "Pacific/Kiritimati"

    last_days = {}
    for customer in (ahead, behind):
        local_today = datetime.now(ZoneInfo(customer.time_zone)).date()
        rows = list(google.iter_daily_metrics(accounts[str(customer.id)], local_today - timedelta(days=3), local_today))
        # Complete days only: yesterday, in the account's own time zone, is the last one.
        last_days[customer.id] = max(r.date for r in rows)
        assert last_days[customer.id] == local_today - timedelta(days=1)
        assert {r.date for r in rows} == {local_today - timedelta(days=n) for n in (1, 2, 3)}
    assert last_days[ahead.id] > last_days[behind.id]


def test_the_api_version_setting_is_what_goes_on_the_wire(sandbox, make_adapter):
    for version in ("v25", "v26"):
        google = make_adapter(sandbox, api_version=version)
        campaigns = list(google.list_campaigns(UK_ACCOUNT))
        assert len(campaigns) == 10
        assert sandbox.state.calls[-1].version == version
    assert sandbox.state.versions_seen == {"v25", "v26"}


def test_proto_plus_mode_reads_the_same_data(sandbox, make_adapter):
    plain = make_adapter(sandbox, use_proto_plus=False)
    wrapped = make_adapter(sandbox, use_proto_plus=True)
    day = datetime.now(ZoneInfo(UK_ACCOUNT.time_zone)).date() - timedelta(days=2)

    assert list(plain.list_campaigns(UK_ACCOUNT)) == list(wrapped.list_campaigns(UK_ACCOUNT))
    assert list(plain.iter_daily_metrics(UK_ACCOUNT, day, day)) == list(
        wrapped.iter_daily_metrics(UK_ACCOUNT, day, day)
    )


def test_dates_outside_the_data_window_give_no_rows(google):
    long_ago = date(2001, 1, 1)
    assert list(google.iter_daily_metrics(US_ACCOUNT, long_ago, long_ago + timedelta(days=5))) == []
    with pytest.raises(ValueError):
        list(google.iter_daily_metrics(US_ACCOUNT, long_ago, long_ago - timedelta(days=1)))


def test_an_account_with_dashes_in_its_id_works(google):
    dashed = replace(US_ACCOUNT, external_id="123-456-7890")
    assert len(list(google.list_campaigns(dashed))) == 10


def test_an_api_version_the_package_does_not_ship_is_a_configuration_error(sandbox, make_adapter):
    with pytest.raises(AuthError) as error:
        make_adapter(sandbox, api_version="v22")  # retired; google-ads 34.x no longer carries it
    assert error.value.code == "UNSUPPORTED_API_VERSION"


def test_the_gaql_subset_the_emulator_understands(sandbox, google):
    """DURING, status filters and customer_client levels, as other callers may send them."""
    during = list(
        google._stream(
            "1234567890",
            "1000000001",
            "SELECT campaign.id, segments.date, metrics.clicks FROM campaign "
            "WHERE segments.date DURING LAST_7_DAYS AND campaign.status != 'REMOVED' ORDER BY segments.date",
        )
    )
    assert len(during) == 9 * 7
    dates = [row.segments.date for row in during]
    assert dates == sorted(dates)
    paused = list(
        google._stream(
            "1234567890", "1000000001", "SELECT campaign.name FROM campaign WHERE campaign.status IN (PAUSED)"
        )
    )
    assert [row.campaign.name for row in paused] == ["Remarketing - Display", "YouTube - Awareness"]
    managers_only = list(
        google._stream(
            "1000000001",
            "1000000001",
            "SELECT customer_client.id FROM customer_client WHERE customer_client.level <= 0",
        )
    )
    assert [row.customer_client.id for row in managers_only] == [1000000001]
    with pytest.raises(PermanentError) as error:
        list(
            google._stream("1234567890", "1000000001", "SELECT campaign.id FROM campaign WHERE campaign.name LIKE 'x'")
        )
    assert error.value.code == "BAD_OPERATOR"
    with pytest.raises(PermanentError) as error:
        list(google._stream("1234567890", "1000000001", "SELECT segments.date, metrics.clicks FROM campaign"))
    assert error.value.code == "EXPECTED_FILTERS_ON_DATE_RANGE"


def test_stopping_early_cancels_the_stream(start_sandbox, make_adapter):
    sandbox = start_sandbox(GoogleSandboxData.scaled(campaigns=3_000, days=40, stream_batch_size=1_000))
    google = make_adapter(sandbox)
    last = datetime.now(ZoneInfo(US_ACCOUNT.time_zone)).date() - timedelta(days=1)
    rows = google.iter_daily_metrics(US_ACCOUNT, last - timedelta(days=29), last)
    first_rows = [next(rows) for _ in range(10)]
    rows.close()
    assert len(first_rows) == 10
    deadline = time.monotonic() + 5
    while not [c for c in sandbox.state.calls if c.method == "SearchStream"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stream_call = next(c for c in sandbox.state.calls if c.method == "SearchStream")
    assert stream_call.messages < 90  # the server stopped short of all 90,000 rows
    assert stream_call.status == "CANCELLED"
    google.list_campaigns(US_ACCOUNT)  # the channel still works after a cancelled stream
    assert len(list(google.list_campaigns(UK_ACCOUNT))) == 3_000
