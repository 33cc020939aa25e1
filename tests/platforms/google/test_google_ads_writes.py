"""Budget changes and conversion uploads through the official client, against the emulator."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import protobuf_helpers
from google.oauth2.credentials import Credentials
from google_sandbox_support import UK_ACCOUNT, UK_PURCHASE_ACTION, US_ACCOUNT, US_PURCHASE_ACTION, sandbox_config

from platforms.base import ClickConversion, PermanentError, TransientError
from platforms.google_ads import error_code_of, to_platform_error

HASHED_EMAIL = "a" * 64  # stands for a SHA-256 hex digest: the adapter never hashes


def _official_client(sandbox) -> GoogleAdsClient:
    config = sandbox_config(sandbox)
    credentials = Credentials(
        token=None,
        refresh_token=config.refresh_token,
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_uri=config.token_uri,
    )
    return GoogleAdsClient(
        credentials=credentials,
        endpoint=config.endpoint,
        login_customer_id=config.login_customer_id,
        version="v26",
        use_proto_plus=True,
    )


def _conversion(gclid: str, minutes: int = 0, **fields) -> ClickConversion:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return ClickConversion(
        conversion_action_id=US_PURCHASE_ACTION,
        conversion_date_time=moment,
        gclid=gclid,
        conversion_value=Decimal("49.90"),
        currency_code="USD",
        **fields,
    )


# --- Budgets ------------------------------------------------------------------------------------


def test_budget_update_is_what_the_next_read_sees(sandbox, google):
    campaign = google.get_campaign(US_ACCOUNT, "20000000003")
    assert not campaign.budget_is_shared

    update = google.update_daily_budget(US_ACCOUNT, campaign, 123_450_000)

    assert update.resource == f"customers/1234567890/campaignBudgets/{campaign.budget_external_id}"
    assert google.get_campaign(US_ACCOUNT, "20000000003").daily_budget_micros == 123_450_000
    by_id = {c.external_id: c for c in google.list_campaigns(US_ACCOUNT)}
    assert by_id["20000000003"].daily_budget_micros == 123_450_000
    assert by_id["20000000005"].daily_budget_micros != 123_450_000  # nothing else moved


def test_a_shared_budget_changes_for_every_campaign_on_it(google):
    brand = google.get_campaign(US_ACCOUNT, "20000000001")
    assert brand.budget_is_shared

    google.update_daily_budget(US_ACCOUNT, brand, 200_000_000)

    assert google.get_campaign(US_ACCOUNT, "20000000002").daily_budget_micros == 200_000_000


def test_a_budget_that_is_not_a_whole_number_of_cents_is_refused_before_sending(sandbox, google):
    campaign = google.get_campaign(UK_ACCOUNT, "21000000003")
    calls_before = len(sandbox.state.calls)

    with pytest.raises(PermanentError) as error:
        google.update_daily_budget(UK_ACCOUNT, campaign, 12_345_678)

    assert error.value.code == "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"
    assert len(sandbox.state.calls) == calls_before
    assert google.get_campaign(UK_ACCOUNT, "21000000003").daily_budget_micros == campaign.daily_budget_micros


def test_the_emulator_refuses_a_non_multiple_budget_like_google(sandbox, google):
    """Sent straight through the official client: what Google answers, and how it maps."""
    client = _official_client(sandbox)
    service = client.get_service("CampaignBudgetService")
    operation = client.get_type("CampaignBudgetOperation")
    operation.update.resource_name = "customers/1234567890/campaignBudgets/30000000003"
    operation.update.amount_micros = 12_345_678
    operation.update_mask = protobuf_helpers.field_mask(None, type(operation.update).pb(operation.update))
    try:
        with pytest.raises(GoogleAdsException) as raised:
            service.mutate_campaign_budgets(customer_id="1234567890", operations=[operation])
    finally:
        service.transport.close()

    assert [error_code_of(e) for e in raised.value.failure.errors] == [
        ("campaign_budget_error", "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT")
    ]
    assert raised.value.request_id
    mapped = to_platform_error(raised.value, google.api)
    assert isinstance(mapped, PermanentError) and not isinstance(mapped, TransientError)
    assert mapped.code == "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"
    assert mapped.request_id == raised.value.request_id


# --- Conversions --------------------------------------------------------------------------------


def test_partial_failure_is_mapped_back_to_the_right_rows(sandbox, google):
    rows = [
        _conversion("Cj0KCQ-known-1", hashed_email=HASHED_EMAIL, consent_ad_user_data="GRANTED"),
        _conversion("UNKNOWN-click-2"),
        _conversion("Cj0KCQ-known-3", order_id="order-3"),
        ClickConversion(
            conversion_action_id=UK_PURCHASE_ACTION, conversion_date_time=datetime.now(UTC), gclid="Cj0K-4"
        ),
        _conversion("not a gclid!"),
        _conversion("Cj0KCQ-known-6", hashed_phone="b" * 64),
    ]

    result = google.upload_conversions(US_ACCOUNT, rows)

    assert [(o.index, o.status, o.code) for o in result.outcomes] == [
        (0, "uploaded", ""),
        (1, "rejected", "CLICK_NOT_FOUND"),
        (2, "uploaded", ""),
        (3, "rejected", "NO_CONVERSION_ACTION_FOUND"),
        (4, "rejected", "UNPARSEABLE_GCLID"),
        (5, "uploaded", ""),
    ]
    assert result.outcomes[1].message  # Google's message travels with the row
    stored = sandbox.state.conversions
    assert [c.gclid for c in stored] == ["Cj0KCQ-known-1", "Cj0KCQ-known-3", "Cj0KCQ-known-6"]
    first = stored[0]
    assert first.conversion_date_time == "2026-03-01 12:00:00+00:00"
    assert first.hashed_emails == (HASHED_EMAIL,)
    assert first.ad_user_data_consent == "GRANTED"
    assert first.conversion_value == 49.9 and first.currency_code == "USD"
    assert stored[1].order_id == "order-3"
    assert stored[2].hashed_phone_numbers == ("b" * 64,)


def test_conversion_time_is_sent_with_its_utc_offset(sandbox, google):
    eastern = timezone(timedelta(hours=-5))
    row = ClickConversion(
        conversion_action_id=US_PURCHASE_ACTION,
        conversion_date_time=datetime(2026, 3, 1, 7, 30, 15, 999, tzinfo=eastern),
        gclid="Cj0-offset",
    )
    assert google.upload_conversions(US_ACCOUNT, [row]).outcomes[0].status == "uploaded"
    sent = sandbox.state.conversions[0].conversion_date_time
    assert sent == "2026-03-01 07:30:15-05:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d", sent)


def test_a_second_upload_of_the_same_conversion_is_a_duplicate_stored_once(sandbox, google):
    row = _conversion("Cj0KCQ-dup")
    assert google.upload_conversions(US_ACCOUNT, [row]).outcomes[0].status == "uploaded"

    # The same moment spelled in another offset is the same conversion to Google.
    same_moment = ClickConversion(
        conversion_action_id=US_PURCHASE_ACTION,
        conversion_date_time=row.conversion_date_time.astimezone(timezone(timedelta(hours=2))),
        gclid="Cj0KCQ-dup",
    )
    again = google.upload_conversions(US_ACCOUNT, [row, same_moment, _conversion("Cj0KCQ-new")])

    assert [(o.status, o.code) for o in again.outcomes] == [
        ("duplicate", "CLICK_CONVERSION_ALREADY_EXISTS"),
        ("duplicate", "CLICK_CONVERSION_ALREADY_EXISTS"),
        ("uploaded", ""),
    ]
    assert [c.gclid for c in sandbox.state.conversions] == ["Cj0KCQ-dup", "Cj0KCQ-new"]


def test_an_upload_lost_after_acceptance_is_a_duplicate_on_retry(sandbox, google):
    sandbox.state.faults.timeout_after_accept = 1.0
    with pytest.raises(TransientError):
        google.upload_conversions(US_ACCOUNT, [_conversion("Cj0KCQ-lost")])
    assert sandbox.state.conversion_count == 1  # accepted, though the answer never came

    sandbox.state.faults.reset()
    retry = google.upload_conversions(US_ACCOUNT, [_conversion("Cj0KCQ-lost")])

    assert retry.outcomes[0].status == "duplicate"
    assert sandbox.state.conversion_count == 1


def test_more_than_2000_conversions_are_refused(sandbox, google):
    rows = [_conversion(f"Cj0-bulk-{n}", minutes=n) for n in range(2_001)]

    with pytest.raises(ValueError, match="2000"):
        google.upload_conversions(US_ACCOUNT, rows)
    assert sandbox.state.calls == []  # refused before anything was sent

    assert len(google.upload_conversions(US_ACCOUNT, rows[:2_000]).outcomes) == 2_000
    assert sandbox.state.conversion_count == 2_000


def test_the_emulator_rejects_a_request_of_2001_conversions_whole(sandbox, google):
    client = _official_client(sandbox)
    service = client.get_service("ConversionUploadService")
    conversions = []
    for n in range(2_001):
        conversion = client.get_type("ClickConversion")
        conversion.gclid = f"Cj0-whole-{n}"
        conversion.conversion_action = f"customers/1234567890/conversionActions/{US_PURCHASE_ACTION}"
        conversion.conversion_date_time = "2026-03-01 12:00:00+00:00"
        conversions.append(conversion)
    try:
        with pytest.raises(GoogleAdsException) as raised:
            service.upload_click_conversions(customer_id="1234567890", conversions=conversions, partial_failure=True)
    finally:
        service.transport.close()

    assert error_code_of(raised.value.failure.errors[0]) == (
        "conversion_upload_error",
        "TOO_MANY_CONVERSIONS_IN_REQUEST",
    )
    assert sandbox.state.conversion_count == 0
    assert isinstance(to_platform_error(raised.value, google.api), PermanentError)


def test_an_empty_upload_sends_nothing(sandbox, google):
    assert google.upload_conversions(US_ACCOUNT, []).outcomes == []
    assert sandbox.state.calls == []
