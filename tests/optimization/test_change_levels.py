"""Budgets where they live and status on both levels, through the API and the worker, against the
emulators over real sockets: each change goes out, is applied on the platform's confirmation and is
read back by the next sync; a preview asks the platform and writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import AdGroup, AdGroupDailyMetric, BudgetLevel, Campaign, DailyMetric
from optimization.models import OptimizationRun
from platforms.registry import get_platform
from tests.optimization.conftest import sync

pytestmark = pytest.mark.django_db


# --- Finding objects of each kind in the synced demo -------------------------------------------


def cbo_daily_campaign(account) -> Campaign:
    return (
        Campaign.objects.filter(
            account=account,
            status="enabled",
            budget_level=BudgetLevel.CAMPAIGN,
            budget_is_shared=False,
            daily_budget_micros__gt=0,
        )
        .order_by("external_id")
        .first()
    )


def lifetime_campaign(account) -> Campaign | None:
    return (
        Campaign.objects.filter(
            account=account, status="enabled", budget_level=BudgetLevel.CAMPAIGN, budget_micros__isnull=False
        )
        .exclude(end_time=None)
        .order_by("external_id")
        .first()
    )


def abo_ad_set(account, *, lifetime: bool = False) -> AdGroup | None:
    ad_sets = AdGroup.objects.filter(
        account=account, status="enabled", campaign__budget_level=BudgetLevel.AD_GROUP, campaign__status="enabled"
    )
    if lifetime:
        ad_sets = ad_sets.filter(lifetime_budget_micros__isnull=False).exclude(end_time=None)
    else:
        ad_sets = ad_sets.filter(daily_budget_micros__gt=0)
    return ad_sets.order_by("external_id").first()


def enabled_ad_group(account) -> AdGroup:
    return AdGroup.objects.filter(account=account, status="enabled", campaign__status="enabled").order_by("pk").first()


def platform_view(obj):
    adapter = get_platform(obj.platform)
    if isinstance(obj, AdGroup):
        return adapter.get_ad_group(obj.account, obj.external_id)
    return adapter.get_campaign(obj.account, obj.external_id)


def url(obj, what: str) -> str:
    prefix = "ad-group" if isinstance(obj, AdGroup) else "campaign"
    return reverse(f"{prefix}-{what}", args=[obj.pk])


def push(client, obj, what: str, body: dict, capture):
    with capture(execute=True):
        response = client.post(url(obj, what), {"reason": "operator test", **body}, format="json")
    return response


# --- The level below campaigns is synced --------------------------------------------------------


def test_ad_groups_and_ad_sets_are_synced_with_budgets_and_metrics(google_account, meta_account):
    assert AdGroup.objects.filter(account=google_account).exists()
    assert not AdGroup.objects.filter(account=google_account, daily_budget_micros__isnull=False).exists()
    assert AdGroup.objects.filter(account=meta_account, campaign__budget_level=BudgetLevel.AD_GROUP).exists()
    assert abo_ad_set(meta_account) is not None
    for account in (google_account, meta_account):
        assert AdGroupDailyMetric.objects.filter(ad_group__account=account).exists()


def test_ad_group_metrics_are_never_added_to_campaign_totals(staff_client, google_account):
    campaign = (
        Campaign.objects.filter(account=google_account, ad_groups__daily_metrics__isnull=False).distinct().first()
    )
    today = timezone.now().date()
    params = {"date_from": (today - timedelta(days=29)).isoformat(), "date_to": today.isoformat()}
    detail = staff_client.get(reverse("campaign-detail", args=[campaign.pk]), params).json()
    own_rows = sum(
        DailyMetric.objects.filter(
            campaign=campaign, date__gte=params["date_from"], date__lte=params["date_to"]
        ).values_list("cost_micros", flat=True)
    )
    assert detail["metrics"]["cost_micros"] == own_rows

    listing = staff_client.get(reverse("ad-group-list"), {"campaign": str(campaign.pk), **params})
    assert listing.status_code == 200
    body = listing.json()
    assert body["count"] == AdGroup.objects.filter(campaign=campaign).count() > 0
    first = body["results"][0]
    assert set(first) >= {
        "id",
        "campaign",
        "platform",
        "external_id",
        "name",
        "status",
        "daily_budget_micros",
        "lifetime_budget_micros",
        "metrics",
    }
    assert all(row["campaign"] == str(campaign.pk) for row in body["results"])


def test_ad_group_list_filters_and_refuses_bad_parameters(staff_client, meta_account):
    response = staff_client.get(reverse("ad-group-list"), {"platform": "meta", "status": "enabled"})
    assert response.status_code == 200
    assert {row["platform"] for row in response.json()["results"]} == {"meta"}
    assert staff_client.get(reverse("ad-group-list"), {"campaign": "not-a-uuid"}).status_code == 400
    assert staff_client.get(reverse("ad-group-list"), {"status": "sleeping"}).status_code == 400


# --- Each platform and level: out, applied on confirmation, read back ---------------------------


@pytest.mark.parametrize(
    ("platform", "find", "body", "read_back"),
    [
        ("google", cbo_daily_campaign, lambda o: {"daily_budget_micros": o.daily_budget_micros + 1_000_000}, "daily"),
        ("meta", cbo_daily_campaign, lambda o: {"daily_budget_micros": o.daily_budget_micros + 1_000_000}, "daily"),
        ("meta", abo_ad_set, lambda o: {"daily_budget_micros": o.daily_budget_micros + 1_000_000}, "daily"),
        ("google", lifetime_campaign, lambda o: {"lifetime_budget_micros": o.budget_micros + 10_000_000}, "lifetime"),
        ("meta", lifetime_campaign, lambda o: {"lifetime_budget_micros": o.budget_micros + 10_000_000}, "lifetime"),
        (
            "meta",
            lambda a: abo_ad_set(a, lifetime=True),
            lambda o: {"lifetime_budget_micros": o.lifetime_budget_micros + 10_000_000},
            "lifetime",
        ),
    ],
    ids=[
        "google-campaign-daily",
        "meta-cbo-daily",
        "meta-ad-set-daily",
        "google-lifetime",
        "meta-lifetime",
        "meta-ad-set-lifetime",
    ],
)
def test_a_budget_goes_out_is_applied_and_read_back(
    platform, find, body, read_back, staff_client, synced_accounts, eager_tasks, django_capture_on_commit_callbacks
):
    accounts = [a for key, a in sorted(synced_accounts.items()) if key.startswith(platform + ":")]
    account, obj = next(((a, find(a)) for a in accounts if find(a) is not None), (None, None))
    assert obj is not None, f"the sandbox demo has no {find.__name__} on {platform}"
    change = body(obj)
    [(_field, new)] = change.items()

    response = push(staff_client, obj, "budget", change, django_capture_on_commit_callbacks)

    assert response.status_code == 202, response.json()
    record = response.json()
    assert (record["kind"], record["level"], record["budget_period"]) == (
        "budget",
        "ad_group" if isinstance(obj, AdGroup) else "campaign",
        read_back,
    )
    run = OptimizationRun.objects.get(pk=record["id"])
    assert run.status == OptimizationRun.Status.APPLIED, run.error_message
    there = platform_view(obj)
    if read_back == "daily":
        assert there.daily_budget_micros == new
    else:
        assert (there.lifetime_budget_micros if isinstance(obj, AdGroup) else there.budget_micros) == new

    sync(account)  # the next sync reads the platform's value back
    obj.refresh_from_db()
    local = obj.daily_budget_micros if read_back == "daily" else getattr(obj, "lifetime_budget_micros", None)
    if read_back == "lifetime" and isinstance(obj, Campaign):
        local = obj.budget_micros
    assert local == new


@pytest.mark.parametrize("platform", ["google", "meta"])
@pytest.mark.parametrize("level", ["campaign", "ad_group"])
def test_pause_then_enable_goes_out_and_is_read_back(
    platform, level, staff_client, synced_accounts, eager_tasks, django_capture_on_commit_callbacks
):
    account = next(a for key, a in synced_accounts.items() if key.startswith(platform + ":"))
    obj = cbo_daily_campaign(account) if level == "campaign" else enabled_ad_group(account)

    paused = push(staff_client, obj, "status", {"status": "paused"}, django_capture_on_commit_callbacks)
    assert paused.status_code == 202, paused.json()
    assert (paused.json()["old_status"], paused.json()["new_status"]) == ("enabled", "paused")
    assert OptimizationRun.objects.get(pk=paused.json()["id"]).status == OptimizationRun.Status.APPLIED
    assert platform_view(obj).status == "paused"
    sync(account)
    obj.refresh_from_db()
    assert obj.status == "paused"

    enabled = push(staff_client, obj, "status", {"status": "enabled"}, django_capture_on_commit_callbacks)
    assert enabled.status_code == 202, enabled.json()
    assert platform_view(obj).status == "enabled"
    sync(account)
    obj.refresh_from_db()
    assert obj.status == "enabled"


# --- Previews ask the platform and write nothing ------------------------------------------------


def test_a_valid_preview_answers_200_and_stores_nothing(staff_client, meta_account):
    ad_set = abo_ad_set(meta_account)
    old = ad_set.daily_budget_micros
    response = staff_client.post(
        url(ad_set, "budget"),
        {"daily_budget_micros": old + 1_000_000, "reason": "check first", "dry_run": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["valid"] is True and body["errors"] == []
    assert body["change"]["new_budget_micros"] == old + 1_000_000
    assert body["change"]["level"] == "ad_group"
    assert not OptimizationRun.objects.exists()
    assert platform_view(ad_set).daily_budget_micros == old


def test_a_status_preview_changes_nothing_on_the_platform(staff_client, google_account):
    group = enabled_ad_group(google_account)
    response = staff_client.post(
        url(group, "status"), {"status": "paused", "reason": "check", "dry_run": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["valid"] is True
    assert platform_view(group).status == "enabled"
    assert not OptimizationRun.objects.exists()


def test_an_invalid_preview_returns_the_refusal_and_writes_nothing(staff_client, meta_account):
    campaign = cbo_daily_campaign(meta_account)
    response = staff_client.post(
        url(campaign, "budget"),
        {"daily_budget_micros": 10_000, "reason": "too little", "dry_run": True},  # 0.01 a day
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["errors"][0]["code"] == "below_platform_minimum"
    assert "at least" in body["errors"][0]["message"]
    assert not OptimizationRun.objects.exists()


# --- Each platform's rules, with a sentence that says how to fix it -----------------------------


def test_a_meta_abo_campaign_points_to_its_ad_sets(staff_client, meta_account):
    campaign = Campaign.objects.filter(account=meta_account, budget_level=BudgetLevel.AD_GROUP).first()
    response = staff_client.post(
        url(campaign, "budget"), {"daily_budget_micros": 50_000_000, "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "budget_on_ad_sets"
    assert "ad sets" in error["message"]


def test_an_ad_set_of_a_cbo_campaign_points_to_its_campaign(staff_client, meta_account):
    ad_set = AdGroup.objects.filter(account=meta_account, campaign__budget_level=BudgetLevel.CAMPAIGN).first()
    response = staff_client.post(
        url(ad_set, "budget"), {"daily_budget_micros": 5_000_000, "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "budget_on_campaign"


def test_google_ad_groups_have_no_budget(staff_client, google_account):
    group = enabled_ad_group(google_account)
    response = staff_client.post(url(group, "budget"), {"daily_budget_micros": 5_000_000, "reason": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_budget_here"


def test_a_lifetime_budget_cannot_go_below_what_is_spent(staff_client, meta_account):
    campaign = lifetime_campaign(meta_account)
    spent = campaign.budget_micros - campaign.budget_remaining_micros
    assert spent > 0
    response = staff_client.post(
        url(campaign, "budget"),
        {"lifetime_budget_micros": spent - 1_000_000, "reason": "cut", "confirm_large_change": True},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "below_amount_spent"


def test_one_of_daily_or_lifetime_and_the_right_one(staff_client, meta_account):
    campaign = cbo_daily_campaign(meta_account)
    both = {"daily_budget_micros": 5_000_000, "lifetime_budget_micros": 5_000_000, "reason": "x"}
    assert staff_client.post(url(campaign, "budget"), both, format="json").status_code == 400
    wrong = staff_client.post(
        url(campaign, "budget"), {"lifetime_budget_micros": 500_000_000, "reason": "x"}, format="json"
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "no_lifetime_budget"


def test_the_minimum_unit_suggestion_is_never_zero(staff_client, google_account):
    campaign = cbo_daily_campaign(google_account)
    response = staff_client.post(
        url(campaign, "budget"), {"daily_budget_micros": 1_005_000, "reason": "x"}, format="json"
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "e.g. 1000000 (1.00 USD) or 1010000 (1.01 USD)" in message

    # A cent a day is below what Google takes: the answer says the floor, not a rounding to 0.
    cent = staff_client.post(url(campaign, "budget"), {"daily_budget_micros": 5_000, "reason": "x"}, format="json")
    assert cent.json()["error"]["code"] == "below_platform_minimum"
    assert "1.00 USD" in cent.json()["error"]["message"]


def test_a_second_change_waits_for_the_pending_one_on_the_same_object(staff_client, google_account):
    group = enabled_ad_group(google_account)
    first = staff_client.post(url(group, "status"), {"status": "paused", "reason": "one"}, format="json")
    assert first.status_code == 202  # no eager worker here: it stays pending
    second = staff_client.post(url(group, "status"), {"status": "paused", "reason": "two"}, format="json")
    assert second.status_code == 400
    assert second.json()["error"]["code"] in {"change_pending", "unchanged"}
    assert OptimizationRun.objects.count() == 1


def test_a_status_changed_on_the_platform_is_not_overwritten(staff_client, google_account, sandbox):
    campaign = cbo_daily_campaign(google_account)
    get_platform("google").update_status(
        google_account,
        changes_target(campaign),
        "paused",
    )
    try:
        response = staff_client.post(url(campaign, "status"), {"status": "paused", "reason": "x"}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "changed_on_platform"
        assert not OptimizationRun.objects.exists()
    finally:  # the emulators live for the session
        get_platform("google").update_status(google_account, changes_target(campaign), "enabled")


def changes_target(obj):
    from optimization.changes import Target

    return Target.of(campaign=obj).platform_target()


def test_the_change_record_list_says_what_changes_on_what(
    staff_client, google_account, eager_tasks, django_capture_on_commit_callbacks
):
    group = enabled_ad_group(google_account)
    push(staff_client, group, "status", {"status": "paused"}, django_capture_on_commit_callbacks)
    rows = staff_client.get(reverse("optimization-run-list")).json()["results"]
    assert rows[0]["kind"] == "status" and rows[0]["level"] == "ad_group"
    assert rows[0]["ad_group"] == str(group.pk) and rows[0]["campaign"] == str(group.campaign_id)
