"""Budget changes through the API and the worker, against the emulators over real sockets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from optimization import changes
from optimization.models import AccountBudgetSettings, OptimizationRun
from optimization.tasks import retry_delay
from platforms.base import RateLimitedError, TransientError
from platforms.registry import get_platform
from tests.campaigns.factories import AdAccountFactory
from tests.optimization.conftest import own_budget_campaign, sync

pytestmark = pytest.mark.django_db


def budget_url(campaign: Campaign) -> str:
    return reverse("campaign-budget", args=[campaign.pk])


def platform_budget(campaign: Campaign) -> int | None:
    """What the platform says now (read through the real adapter and SDK)."""
    return get_platform(campaign.platform).get_campaign(campaign.account, campaign.external_id).daily_budget_micros


def post_budget(client, campaign: Campaign, micros: int, reason: str = "Strong week, more room", **flags):
    return client.post(budget_url(campaign), {"daily_budget_micros": micros, "reason": reason, **flags}, format="json")


# --- Applied ------------------------------------------------------------------------------------


def test_api_change_is_pushed_and_applied_once_the_platform_confirms(
    staff_client, google_account, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(google_account)
    old = campaign.daily_budget_micros
    new = old + 10_000_000

    with django_capture_on_commit_callbacks(execute=True):
        response = post_budget(staff_client, campaign, new)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["status"], body["old_budget_micros"], body["new_budget_micros"]) == ("pending", old, new)
    assert body["source"] == "api" and body["requested_by"] == "operator"
    run = OptimizationRun.objects.get(pk=body["id"])
    assert run.status == OptimizationRun.Status.APPLIED
    assert run.platform_response["daily_budget_micros"] == new
    assert platform_budget(campaign) == new
    campaign.refresh_from_db()
    assert campaign.daily_budget_micros == new


def test_meta_budget_is_converted_to_minor_units_and_applied(
    staff_client, meta_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(meta_account)
    new = campaign.daily_budget_micros + 2_500_000  # + 2.50 EUR

    with django_capture_on_commit_callbacks(execute=True):
        response = post_budget(staff_client, campaign, new)

    assert response.status_code == 202, response.json()
    assert OptimizationRun.objects.get().status == OptimizationRun.Status.APPLIED
    assert platform_budget(campaign) == new


def test_a_confirmed_shared_budget_change_updates_every_campaign_on_it(
    staff_client, google_account, eager_tasks, django_capture_on_commit_callbacks
):
    shared = Campaign.objects.filter(account=google_account, budget_is_shared=True).order_by("name")
    campaign, sibling = shared[0], shared[1]
    new = campaign.daily_budget_micros + 5_000_000

    with django_capture_on_commit_callbacks(execute=True):
        response = post_budget(staff_client, campaign, new, confirm_shared_budget=True)

    assert response.status_code == 202, response.json()
    sibling.refresh_from_db()
    assert sibling.daily_budget_micros == new
    assert OptimizationRun.objects.get().confirmed_shared_budget is True


# --- Guards: each a 400 naming the problem; nothing recorded, nothing pushed ------------------


def assert_refused(response, code: str, field: str, *words: str) -> None:
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["details"]["fields"]
    for word in words:
        assert word in error["message"], error["message"]


@pytest.mark.parametrize(
    ("new_budget", "code", "words"),
    [
        (0, "not_positive", ("must be positive", "pause")),
        (-5_000_000, "not_positive", ("must be positive",)),
        (12_345_678, "not_minimum_unit_multiple", ("USD minimum units", "10,000 micros", "12340000")),
    ],
)
def test_amount_guards(staff_client, google_account, new_budget, code, words):
    campaign = own_budget_campaign(google_account)
    before = platform_budget(campaign)

    response = post_budget(staff_client, campaign, new_budget)

    assert_refused(response, code, "daily_budget_micros", *words)
    assert not OptimizationRun.objects.exists()
    assert platform_budget(campaign) == before


def test_above_the_account_cap(staff_client, google_account):
    campaign = own_budget_campaign(google_account)
    AccountBudgetSettings.objects.create(account=google_account, max_campaign_daily_budget_micros=100_000_000)

    response = post_budget(staff_client, campaign, 100_010_000)

    assert_refused(response, "above_account_cap", "daily_budget_micros", "100.01 USD", "cap of 100.00 USD")
    assert not OptimizationRun.objects.exists()


def test_a_jump_beyond_half_needs_confirmation(
    staff_client, google_account, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(google_account)
    doubled = campaign.daily_budget_micros * 2

    refused = post_budget(staff_client, campaign, doubled)
    assert_refused(refused, "large_change_unconfirmed", "confirm_large_change", "+100%", "±50%")
    assert not OptimizationRun.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        accepted = post_budget(staff_client, campaign, doubled, confirm_large_change=True)
    assert accepted.status_code == 202
    assert platform_budget(campaign) == doubled


def test_a_removed_campaign_is_refused(staff_client, google_account):
    removed = Campaign.objects.filter(account=google_account, status="removed").first()

    response = post_budget(staff_client, removed, removed.daily_budget_micros + 1_000_000)

    assert_refused(response, "campaign_removed", "campaign", "removed")


def test_a_shared_budget_names_the_other_campaigns_and_needs_confirmation(staff_client, google_account):
    campaign, sibling = Campaign.objects.filter(account=google_account, budget_is_shared=True).order_by("name")[:2]

    response = post_budget(staff_client, campaign, campaign.daily_budget_micros + 1_000_000)

    assert_refused(response, "shared_budget_unconfirmed", "confirm_shared_budget", sibling.name, "confirm")
    assert not OptimizationRun.objects.exists()


def test_a_budget_changed_on_the_platform_since_the_sync_is_never_overwritten(staff_client, google_account, sandbox):
    campaign = own_budget_campaign(google_account)
    sandbox.google.state.set_budget_amount(int(campaign.budget_external_id), 77_000_000)

    response = post_budget(staff_client, campaign, campaign.daily_budget_micros + 1_000_000)

    assert_refused(response, "changed_on_platform", "daily_budget_micros", "77.00 USD", "since the last sync")
    assert not OptimizationRun.objects.exists()
    assert platform_budget(campaign) == 77_000_000

    sync(google_account)  # the way out the message names
    campaign.refresh_from_db()
    assert post_budget(staff_client, campaign, 80_000_000).status_code == 202


def test_campaign_budgets_on_meta_ad_sets_point_to_the_ad_sets(staff_client, meta_account):
    campaign = Campaign.objects.get(account=meta_account, name="Interest Tests - Ad Set Budgets")

    response = post_budget(staff_client, campaign, 12_000_000)

    assert_refused(response, "budget_on_ad_sets", "daily_budget_micros", "ad sets")


def test_a_stale_row_claiming_a_campaign_budget_is_caught_by_the_platform_read(staff_client, meta_account):
    campaign = Campaign.objects.get(account=meta_account, name="Interest Tests - Ad Set Budgets")
    campaign.budget_level = "campaign"  # as if a stale row said otherwise
    campaign.daily_budget_micros = 10_000_000
    campaign.save()

    response = post_budget(staff_client, campaign, 12_000_000)

    assert_refused(response, "changed_on_platform", "daily_budget_micros", "sync")
    assert not OptimizationRun.objects.exists()


def test_one_change_in_flight_per_campaign(staff_client, google_account):
    campaign = own_budget_campaign(google_account)
    first = post_budget(staff_client, campaign, campaign.daily_budget_micros + 1_000_000)
    assert first.status_code == 202  # not pushed: no on-commit in this test

    second = post_budget(staff_client, campaign, campaign.daily_budget_micros + 2_000_000)

    assert_refused(second, "change_pending", "campaign", f"#{first.json()['id']}", "still being pushed")
    assert OptimizationRun.objects.count() == 1


def test_a_reason_is_required(staff_client, google_account):
    campaign = own_budget_campaign(google_account)

    response = post_budget(staff_client, campaign, campaign.daily_budget_micros + 1_000_000, reason="  ")

    assert_refused(response, "required", "reason", "reason is required")


def test_a_viewer_gets_403_and_an_advertiser_of_another_account_404(auth_client, client_with_role, google_account):
    campaign = own_budget_campaign(google_account)
    budget = campaign.daily_budget_micros

    response = post_budget(auth_client, campaign, budget + 1_000_000)  # a viewer of every account
    assert response.status_code == 403
    assert "advertiser role" in response.json()["error"]["message"]

    elsewhere = client_with_role("advertiser", [AdAccountFactory(platform="google")])
    assert post_budget(elsewhere, campaign, budget + 1_000_000).status_code == 404
    assert not OptimizationRun.objects.exists()
    campaign.refresh_from_db()
    assert campaign.daily_budget_micros == budget


def test_unreachable_platform_is_a_503_and_changes_nothing(staff_client, google_account, sandbox):
    campaign = own_budget_campaign(google_account)
    sandbox.google.state.faults.unavailable = 1.0

    response = post_budget(staff_client, campaign, campaign.daily_budget_micros + 1_000_000)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "platform_unavailable"
    assert not OptimizationRun.objects.exists()


# --- The push: rejections, races, retries -----------------------------------------------------


def request_change(campaign: Campaign, staff_user, new: int) -> OptimizationRun:
    return changes.budget_change(
        campaign=campaign, new_micros=new, reason="test", actor=staff_user, source=OptimizationRun.Source.STAFF
    )


def test_a_platform_refusal_keeps_the_budget_and_records_why(google_account, staff_user, sandbox):
    campaign = own_budget_campaign(google_account)
    old = campaign.daily_budget_micros
    run = request_change(campaign, staff_user, old + 1_000_000)
    sandbox.google.state.faults.auth = 1.0  # the platform refuses the credentials at push time

    run = changes.change_push(run=run)

    assert run.status == OptimizationRun.Status.FAILED
    assert run.error_message.startswith("Google Ads refused the change:")
    assert run.platform_response["code"]
    campaign.refresh_from_db()
    assert campaign.daily_budget_micros == old
    sandbox.reset_faults()
    assert platform_budget(campaign) == old


def test_a_change_made_on_the_platform_after_the_request_is_not_overwritten(google_account, staff_user, sandbox):
    campaign = own_budget_campaign(google_account)
    run = request_change(campaign, staff_user, campaign.daily_budget_micros + 1_000_000)
    sandbox.google.state.set_budget_amount(int(campaign.budget_external_id), 66_000_000)

    run = changes.change_push(run=run)

    assert run.status == OptimizationRun.Status.FAILED
    assert "changed on Google Ads after this change was requested" in run.error_message
    assert platform_budget(campaign) == 66_000_000


def test_transient_errors_leave_the_run_pending_for_a_retry_then_it_applies(google_account, staff_user, sandbox):
    campaign = own_budget_campaign(google_account)
    new = campaign.daily_budget_micros + 1_000_000
    run = request_change(campaign, staff_user, new)
    sandbox.google.state.faults.unavailable = 1.0

    with pytest.raises(TransientError):
        changes.change_push(run=run)
    run.refresh_from_db()
    assert run.status == OptimizationRun.Status.PENDING

    sandbox.reset_faults()
    assert changes.change_push(run=run).status == OptimizationRun.Status.APPLIED
    # A redelivered message finds nothing left to do.
    assert changes.change_push(run=run).push_attempts == 2


def test_a_push_whose_outcome_was_lost_is_recognised_as_applied(google_account, staff_user, sandbox):
    campaign = own_budget_campaign(google_account)
    new = campaign.daily_budget_micros + 1_000_000
    run = request_change(campaign, staff_user, new)
    sandbox.google.state.set_budget_amount(int(campaign.budget_external_id), new)  # confirmed, then the worker died

    run = changes.change_push(run=run)

    assert run.status == OptimizationRun.Status.APPLIED
    assert run.platform_response["already_set"] is True


def test_retry_delays_never_exceed_the_configured_cap(settings):
    settings.TASK_MAX_RETRY_DELAY_SECONDS = 900
    assert retry_delay(RateLimitedError("quota", retry_after_seconds=86_400), 0) == 900
    assert retry_delay(RateLimitedError("quota", retry_after_seconds=30), 0) >= 30
    assert max(retry_delay(TransientError("down"), n) for n in range(20)) <= 900
