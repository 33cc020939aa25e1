"""Writing through the official SDK: budget updates and Conversions API events."""

from __future__ import annotations

import dataclasses
import time

import pytest

from platforms.base import Account, ConversionEvent, PermanentError
from platforms.meta import MetaPlatform
from platforms.sandbox.meta import MetaSandbox

HASHED_EMAIL = "8b1a9953c4611296a827abf8c47804d7e6c49c6b0f7d8b2b6a8d6f8e5b6c7d8e"


def _campaign_named(platform: MetaPlatform, account: Account, name: str):
    return next(c for c in platform.list_campaigns(account) if c.name == name)


def test_budget_update_persists_and_the_next_read_sees_it(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    campaign = _campaign_named(platform, eur_account, "Brand - Always On")

    update = platform.update_daily_budget(eur_account, campaign, 77_500_000)  # 77.50 EUR

    assert update.daily_budget_micros == 77_500_000
    assert sandbox.state.campaign(campaign.external_id).daily_budget == 7_750  # cents on the wire
    assert platform.get_campaign(eur_account, campaign.external_id).daily_budget_micros == 77_500_000
    assert _campaign_named(platform, eur_account, "Brand - Always On").daily_budget_micros == 77_500_000


def test_eur_budget_below_one_cent_is_refused_before_sending(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    campaign = _campaign_named(platform, eur_account, "Brand - Always On")
    posts_before = sum(1 for method, _ in sandbox.state.requests if method == "POST")

    with pytest.raises(PermanentError) as refused:
        platform.update_daily_budget(eur_account, campaign, 77_505_000)  # 77.505 EUR

    assert refused.value.code == "not_a_whole_minor_unit"
    assert sum(1 for method, _ in sandbox.state.requests if method == "POST") == posts_before
    assert sandbox.state.campaign(campaign.external_id).daily_budget == 5_000


def test_jpy_budget_update_sends_whole_yen(platform: MetaPlatform, sandbox: MetaSandbox, jpy_account: Account) -> None:
    campaign = next(iter(platform.list_campaigns(jpy_account)))

    update = platform.update_daily_budget(jpy_account, campaign, 12_000_000_000)  # 12,000 yen

    assert update.daily_budget_micros == 12_000_000_000
    assert sandbox.state.campaign(campaign.external_id).daily_budget == 12_000  # yen: offset 1
    assert platform.get_campaign(jpy_account, campaign.external_id).daily_budget_micros == 12_000_000_000

    with pytest.raises(PermanentError) as refused:
        platform.update_daily_budget(jpy_account, campaign, 12_000_500_000)  # 12,000.5 yen
    assert refused.value.code == "not_a_whole_minor_unit"
    assert sandbox.state.campaign(campaign.external_id).daily_budget == 12_000


def test_ad_set_level_budget_is_refused(platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account) -> None:
    campaign = _campaign_named(platform, eur_account, "Interest Tests - Ad Set Budgets")
    assert campaign.budget_level == "ad_set"

    with pytest.raises(PermanentError) as refused:
        platform.update_daily_budget(eur_account, campaign, 20_000_000)
    assert refused.value.code == "budget_on_ad_sets"
    assert not any(method == "POST" for method, _ in sandbox.state.requests)

    # A stale view that still believes in a campaign budget: Meta itself refuses.
    stale = dataclasses.replace(campaign, budget_level="campaign", daily_budget_micros=10_000_000)
    with pytest.raises(PermanentError) as refused_by_meta:
        platform.update_daily_budget(eur_account, stale, 20_000_000)
    assert refused_by_meta.value.code == "100"
    assert "ad sets" in refused_by_meta.value.message
    assert sandbox.state.campaign(campaign.external_id).daily_budget is None


def _event(event_id: str, *, age_seconds: int = 120, name: str = "Purchase") -> ConversionEvent:
    return ConversionEvent(
        event_name=name,
        event_time=int(time.time()) - age_seconds,
        event_id=event_id,
        action_source="website",
        event_source_url="https://shop.example/checkout",
        user_data={"em": HASHED_EMAIL, "external_id": "customer-42", "client_ip_address": "203.0.113.7"},
        custom_data={"value": 49.9, "currency": "EUR", "order_id": event_id},
    )


def test_events_are_uploaded_and_deduplicated_on_name_and_id(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    pixel = sandbox.state.pixel_id

    first = platform.upload_conversions(eur_account, [_event("order-1"), _event("order-2")], destination_id=pixel)
    again = platform.upload_conversions(eur_account, [_event("order-1")], destination_id=pixel)

    assert [o.status for o in first.outcomes] == ["uploaded", "uploaded"]
    assert [o.status for o in again.outcomes] == ["uploaded"]  # Meta counts a duplicate as received
    assert first.request_id and first.raw["events_received"] == 2
    assert sandbox.state.received_events[("Purchase", "order-1")] == 2
    assert sandbox.state.event_count("Purchase", "order-1") == 1  # stored once
    assert sandbox.state.event_count("Purchase", "order-2") == 1
    stored = next(e for e in sandbox.state.stored_events if e["event_id"] == "order-1")
    # Already-hashed values pass the SDK's normalizer unchanged; the others are sent as given.
    assert stored["user_data"]["em"] == [HASHED_EMAIL]
    assert stored["user_data"]["external_id"] == ["customer-42"]
    assert stored["custom_data"]["value"] == 49.9


def test_an_event_older_than_seven_days_refuses_the_whole_request(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    events = [_event("fresh-1"), _event("stale-1", age_seconds=8 * 24 * 3600), _event("fresh-2")]

    with pytest.raises(PermanentError) as refused:
        platform.upload_conversions(eur_account, events, destination_id=sandbox.state.pixel_id)

    assert refused.value.code == "100/2804003"
    assert refused.value.request_id  # fbtrace_id, for Meta support
    outcomes = refused.value.details["outcomes"]
    assert [(o.index, o.status, o.code) for o in outcomes] == [
        (0, "rejected", "request_refused"),
        (1, "rejected", "100/2804003"),
        (2, "rejected", "request_refused"),
    ]
    assert "row 1" in outcomes[0].message
    assert sandbox.state.stored_events == []


def test_a_row_that_cannot_be_built_is_rejected_alone(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    bad = dataclasses.replace(_event("bad-1"), action_source="carrier-pigeon")

    result = platform.upload_conversions(eur_account, [_event("ok-1"), bad], destination_id=sandbox.state.pixel_id)

    assert [(o.index, o.status) for o in result.outcomes] == [(0, "uploaded"), (1, "rejected")]
    assert result.outcomes[1].code == "invalid_event"
    assert [e["event_id"] for e in sandbox.state.stored_events] == ["ok-1"]


def test_more_than_1000_events_are_refused_before_sending(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        platform.upload_conversions(
            eur_account, [_event(f"e-{n}") for n in range(1001)], destination_id=sandbox.state.pixel_id
        )
    assert sandbox.state.request_count("/events") == 0
