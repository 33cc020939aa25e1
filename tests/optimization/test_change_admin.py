"""The operator's change screens in admin, through Django's test client: money in the account's
currency, read-only synced objects, the budget and status forms with their platform check, the
bulk status actions with their confirmation page, the ad group list, and the optimizer's preview
and partial-approval warning. Each refusal writes no change record; each action asks the role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.access import ADMIN, ADVERTISER, VIEWER
from campaigns.models import AdGroup, AdGroupDailyMetric, Campaign
from campaigns.services import account_today
from optimization.models import OptimizationRun
from platforms.registry import get_platform
from tests.campaigns.factories import (
    AccountAccessFactory,
    AdAccountFactory,
    AdGroupFactory,
    CampaignFactory,
    add_metrics,
)
from tests.optimization.conftest import own_budget_campaign
from tests.optimization.factories import AccountBudgetSettingsFactory, OptimizationRunFactory

pytestmark = pytest.mark.django_db

CAMPAIGN_LIST = "admin:campaigns_campaign_changelist"
AD_GROUP_LIST = "admin:campaigns_adgroup_changelist"


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def staff_with_role(client):
    """A staff member holding ``role`` on ``account`` only, logged in."""

    def make(role: str, account) -> object:
        person = AccountAccessFactory(user__is_staff=True, account=account, role=role).user
        client.force_login(person)
        client.user = person
        return client

    return make


@pytest.fixture
def meta_shop(db):
    return AdAccountFactory(platform="meta", name="Meta shop", currency_code="USD", time_zone="UTC")


@pytest.fixture
def abo_campaign(meta_shop) -> Campaign:
    """A Meta campaign whose budgets live on its ad sets: one daily, one lifetime."""
    campaign = CampaignFactory(
        account=meta_shop, name="ABO prospecting", daily_budget_micros=None, budget_level="ad_group"
    )
    AdGroupFactory(campaign=campaign, name="Daily ad set", daily_budget_micros=40_000_000)
    AdGroupFactory(
        campaign=campaign,
        name="Lifetime ad set",
        lifetime_budget_micros=900_000_000,
        budget_remaining_micros=300_000_000,
        end_time=timezone.now() + timedelta(days=10),
    )
    return campaign


def url(obj, view: str) -> str:
    return reverse(f"admin:campaigns_{obj._meta.model_name}_{view}", args=[obj.pk])


def page(client, path: str, **data) -> str:
    response = client.post(path, data) if data else client.get(path)
    assert response.status_code == 200, (response.status_code, response.content[:500])
    return response.content.decode()


# --- Money, not micros ------------------------------------------------------------------------------


def test_lists_and_pages_show_money_in_the_account_currency_jpy_without_decimals(operator):
    account = AdAccountFactory(currency_code="JPY", time_zone="Asia/Tokyo")
    campaign = CampaignFactory(account=account, name="Tokyo search", daily_budget_micros=15_000_000_000)
    add_metrics(campaign, days=3, end=account_today(account), cost_micros=12_345_000_000)

    listing = page(operator, reverse(CAMPAIGN_LIST))
    detail = page(operator, url(campaign, "change"))
    metrics = page(operator, reverse("admin:campaigns_dailymetric_changelist"))

    assert "15,000 JPY / day" in listing and "37,035 JPY" in listing  # 3 days of spend
    assert "15,000 JPY / day" in detail and "12,345 JPY" in detail
    assert "15000000000" not in detail and "12345000000" not in detail
    assert "12,345 JPY" in metrics and "12345000000" not in metrics


def test_the_budget_form_takes_currency_units(operator, abo_campaign):
    lifetime = abo_campaign.ad_groups.get(name="Lifetime ad set")
    form = page(operator, url(lifetime, "budget"))
    assert "New lifetime budget" in form and "900.00 USD" in form
    assert "Spent of the lifetime budget" in form and "600.00 USD" in form


# --- What the platform owns is read-only -------------------------------------------------------------


def test_the_campaign_page_edits_nothing_and_a_forged_post_changes_nothing(operator):
    campaign = CampaignFactory(name="Brand", status="enabled")
    detail = page(operator, url(campaign, "change"))
    for field in ("name", "status", "daily_budget_micros", "budget_micros", "external_id"):
        assert f'name="{field}"' not in detail
    assert "changed successfully" not in detail

    response = operator.post(url(campaign, "change"), {"name": "Renamed", "status": "paused"})

    assert response.status_code == 403
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Brand", "enabled")
    assert not OptimizationRun.objects.exists()


@pytest.mark.parametrize("model", ["campaign", "adgroup", "dailymetric", "adaccount"])
def test_synced_objects_cannot_be_added_or_deleted(operator, abo_campaign, model):
    assert operator.get(reverse(f"admin:campaigns_{model}_add")).status_code == 403
    row = {
        "campaign": abo_campaign,
        "adgroup": abo_campaign.ad_groups.first(),
        "adaccount": abo_campaign.account,
        "dailymetric": None,
    }[model]
    if row is not None:
        response = operator.post(reverse(f"admin:campaigns_{model}_delete", args=[row.pk]), {"post": "yes"})
        assert response.status_code == 403
        assert type(row).objects.filter(pk=row.pk).exists()


def test_the_ad_group_page_is_read_only_too(operator, abo_campaign):
    group = abo_campaign.ad_groups.get(name="Daily ad set")
    detail = page(operator, url(group, "change"))
    assert 'name="name"' not in detail and 'name="status"' not in detail
    assert operator.post(url(group, "change"), {"name": "x"}).status_code == 403


# --- The ad group list ---------------------------------------------------------------------------


def test_the_ad_group_list_shows_campaign_status_budget_and_7_day_spend(operator, abo_campaign):
    group = abo_campaign.ad_groups.get(name="Daily ad set")
    today = account_today(abo_campaign.account)
    AdGroupDailyMetric.objects.bulk_create(
        AdGroupDailyMetric(ad_group=group, date=today - timedelta(days=offset), cost_micros=5_000_000)
        for offset in range(10)  # 7 of them in the window
    )

    listing = page(operator, reverse(AD_GROUP_LIST))

    assert "Daily ad set" in listing and "ABO prospecting" in listing
    assert "40.00 USD / day" in listing and "900.00 USD lifetime" in listing
    assert "35.00 USD" in listing


def test_the_ad_group_list_filters_by_campaign_account_platform_and_status(operator, abo_campaign):
    google = CampaignFactory(name="Google search")
    AdGroupFactory(campaign=google, name="Exact match", status="paused")

    def names(**params) -> str:
        return page(operator, reverse(AD_GROUP_LIST) + "?" + "&".join(f"{k}={v}" for k, v in params.items()))

    assert "Exact match" not in names(campaign=abo_campaign.pk) and "Daily ad set" in names(campaign=abo_campaign.pk)
    assert "Exact match" in names(account__id__exact=google.account_id)
    assert "Daily ad set" not in names(account__id__exact=google.account_id)
    assert "Exact match" not in names(platform__exact="meta")
    assert "Daily ad set" not in names(status__exact="paused")
    assert "Exact match" not in names(campaign="not-a-uuid")  # a bad id selects nothing, no error


def test_the_campaign_page_lists_its_ad_sets_read_only_with_links(operator, abo_campaign):
    detail = page(operator, url(abo_campaign, "change"))
    for group in abo_campaign.ad_groups.all():
        assert url(group, "change") in detail
    assert "Ad groups / ad sets" in detail
    assert 'name="ad_groups-0-name"' not in detail


def test_the_ad_group_list_holds_only_the_users_accounts(staff_with_role, abo_campaign):
    other = CampaignFactory(name="Someone else's")
    AdGroupFactory(campaign=other, name="Not yours")
    client = staff_with_role(VIEWER, abo_campaign.account)

    listing = page(client, reverse(AD_GROUP_LIST))

    assert "Daily ad set" in listing and "Not yours" not in listing
    assert client.get(url(other.ad_groups.get(), "change")).status_code == 302  # Django: "doesn't exist"


# --- Where a budget lives ----------------------------------------------------------------------------


def test_an_abo_campaigns_budget_page_links_to_its_ad_sets_budget_forms(operator, abo_campaign):
    detail = page(operator, url(abo_campaign, "change"))
    form = page(operator, url(abo_campaign, "budget"))

    assert "live on its ad sets" in detail
    for group in abo_campaign.ad_groups.all():
        assert url(group, "budget") in detail and url(group, "budget") in form
    assert 'name="daily_budget"' not in form and 'name="lifetime_budget"' not in form


def test_a_google_ad_group_points_to_its_campaigns_budget(operator):
    campaign = CampaignFactory(name="Google search")
    group = AdGroupFactory(campaign=campaign, name="Exact match")
    form = page(operator, url(group, "budget"))
    assert "Google ad groups have no budget" in form and url(campaign, "budget") in form
    assert 'name="daily_budget"' not in form and 'name="lifetime_budget"' not in form


def test_the_confirmations_appear_only_when_needed(operator):
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    shared = CampaignFactory(daily_budget_micros=100_000_000, budget_is_shared=True, budget_external_id="77")
    CampaignFactory(account=shared.account, budget_is_shared=True, budget_external_id="77", name="Sibling")

    plain = page(operator, url(campaign, "budget"))
    small = page(operator, url(campaign, "budget"), daily_budget="120", reason="", _check="Check with Google")
    large = page(operator, url(campaign, "budget"), daily_budget="400", reason="r", _change="Change budget")
    on_shared = page(operator, url(shared, "budget"))

    assert 'name="confirm_large_change"' not in plain and 'name="confirm_shared_budget"' not in plain
    assert 'name="confirm_large_change"' not in small
    assert 'name="confirm_large_change"' in large and "beyond ±50%" in large
    assert 'name="confirm_shared_budget"' in on_shared and "Sibling" in on_shared
    assert not OptimizationRun.objects.filter(kind="budget").exists()


def test_a_refused_check_shows_the_refusal_and_writes_nothing(operator, abo_campaign):
    group = abo_campaign.ad_groups.get(name="Daily ad set")
    form = page(operator, url(group, "budget"), daily_budget="0.50", reason="Test the floor", _check="Check with Meta")

    assert 'data-verdict="invalid"' in form
    assert "Meta takes no daily budget below 1.00 USD" in form and "below_platform_minimum" in form
    assert "Check with Meta" in form
    assert not OptimizationRun.objects.exists()


def test_a_refused_change_shows_the_guard_on_its_field_and_writes_nothing(operator, abo_campaign):
    group = abo_campaign.ad_groups.get(name="Lifetime ad set")  # 600.00 USD already spent
    form = page(operator, url(group, "budget"), lifetime_budget="500", reason="Trim it", _change="Change budget")

    assert "600.00 USD of the lifetime budget is already spent" in form
    assert not OptimizationRun.objects.exists()


# --- Status ----------------------------------------------------------------------------------------


def test_the_campaign_page_offers_pause_and_the_form_asks_for_a_reason(operator):
    campaign = CampaignFactory(status="enabled")
    detail = page(operator, url(campaign, "change"))
    assert f"{url(campaign, 'status')}?to=paused" in detail and "Pause campaign" in detail

    form = page(operator, url(campaign, "status") + "?to=paused")
    assert "Check with Google" in form and 'value="Pause campaign"' in form

    refused = page(operator, url(campaign, "status"), status="paused", reason="", _change="Pause campaign")
    assert "This field is required" in refused
    assert not OptimizationRun.objects.exists()


def test_a_paused_ad_set_offers_enable(operator, abo_campaign):
    group = AdGroupFactory(campaign=abo_campaign, name="Paused one", status="paused", daily_budget_micros=5_000_000)
    assert "Enable ad set" in page(operator, url(group, "change"))
    checked = page(operator, url(group, "status"), status="paused", reason="again", _check="Check with Meta")
    assert "already paused" in checked and 'data-verdict="invalid"' in checked
    assert not OptimizationRun.objects.exists()


# --- Bulk status actions --------------------------------------------------------------------------


def test_pause_selected_asks_for_a_reason_on_a_confirmation_page(operator):
    campaigns = [CampaignFactory(name=f"Bulk {n}") for n in range(3)]
    ids = [str(c.pk) for c in campaigns]

    confirm = page(operator, reverse(CAMPAIGN_LIST), action="pause_selected", _selected_action=ids)
    for campaign in campaigns:
        assert campaign.name in confirm and f'value="{campaign.pk}"' in confirm
    assert 'name="post" value="yes"' in confirm and 'name="reason"' in confirm

    again = page(operator, reverse(CAMPAIGN_LIST), action="pause_selected", _selected_action=ids, post="yes", reason="")
    assert "This field is required" in again
    assert not OptimizationRun.objects.exists()


def test_bulk_pause_reports_each_refusal_by_name(operator, abo_campaign):
    paused = AdGroupFactory(campaign=abo_campaign, name="Already paused", status="paused")
    removed = AdGroupFactory(campaign=abo_campaign, name="Gone", status="removed")

    response = operator.post(
        reverse(AD_GROUP_LIST),
        {"action": "pause_selected", "_selected_action": [paused.pk, removed.pk], "post": "yes", "reason": "Overspend"},
        follow=True,
    )

    text = response.content.decode()
    assert "Ad set “Already paused” was not changed" in text and "already paused" in text
    assert "Ad set “Gone” was not changed" in text and "removed on Meta" in text
    assert not OptimizationRun.objects.exists()


def test_bulk_actions_need_the_advertiser_role_on_every_selected_row(staff_with_role, abo_campaign):
    mine = abo_campaign.ad_groups.first()
    viewer = staff_with_role(VIEWER, abo_campaign.account)
    actions = page(viewer, reverse(AD_GROUP_LIST))
    assert "pause_selected" not in actions and "enable_selected" not in actions

    advertiser = staff_with_role(ADVERTISER, abo_campaign.account)
    elsewhere = AdGroupFactory(campaign=CampaignFactory(), name="Elsewhere")
    AdGroup.objects.filter(pk=elsewhere.pk)  # visible to superusers only
    response = advertiser.post(
        reverse(AD_GROUP_LIST),
        {"action": "pause_selected", "_selected_action": [mine.pk], "post": "yes", "reason": "x"},
        follow=True,
    )
    assert response.status_code == 200
    assert not OptimizationRun.objects.filter(ad_group=elsewhere).exists()


# --- Roles on the forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["budget", "status"])
def test_the_forms_need_the_advertiser_role(staff_with_role, abo_campaign, view):
    group = abo_campaign.ad_groups.get(name="Daily ad set")
    stranger = staff_with_role(VIEWER, AdAccountFactory())
    assert stranger.get(url(group, view)).status_code == 404  # not visible: not revealed

    viewer = staff_with_role(VIEWER, abo_campaign.account)
    assert viewer.get(url(group, view)).status_code == 403
    assert viewer.post(url(group, view), {"daily_budget": "50", "status": "paused", "reason": "x"}).status_code == 403
    detail = page(viewer, url(group, "change"))
    assert url(group, "budget") not in detail and url(group, "status") not in detail

    advertiser = staff_with_role(ADVERTISER, abo_campaign.account)
    assert advertiser.get(url(group, view)).status_code == 200
    assert advertiser.get(url(group, view).replace(str(group.pk), "not-an-id")).status_code == 404
    assert not OptimizationRun.objects.exists()


# --- The optimizer from admin ----------------------------------------------------------------------


@pytest.fixture
def optimizer_account(db):
    """Two campaigns worse than a 25 USD target CPA and one better, all spending their budgets,
    plus one worse that leaves most of its budget unspent."""
    account = AdAccountFactory(name="Optimized", currency_code="USD", time_zone="UTC")
    end = account_today(account) - timedelta(days=1)
    for name, conversions, cost in (("Worse A", 1, 100), ("Worse B", 1, 100), ("Better", 8, 100), ("Idle", 1, 30)):
        campaign = CampaignFactory(account=account, name=name, daily_budget_micros=100_000_000)
        add_metrics(campaign, days=14, end=end, cost_micros=cost * 1_000_000, conversions=conversions)
    AccountBudgetSettingsFactory(account=account, target_cpa_micros=25_000_000)
    return account


def test_run_optimizer_previews_without_saving_then_records_proposals(operator, optimizer_account, settings):
    settings.OPTIMIZER_MIN_CONVERSIONS = 0
    older = OptimizationRunFactory(
        campaign=Campaign.objects.get(name="Better"),
        old_budget_micros=100_000_000,
        new_budget_micros=90_000_000,
        proposal=True,
        reason="an older proposal someone is reviewing",
    )
    run_url = reverse("admin:optimization_optimizationrun_run_optimizer")
    assert "Run optimizer" in page(operator, reverse("admin:optimization_optimizationrun_changelist"))

    preview = page(operator, run_url, account=optimizer_account.pk, _preview="Preview proposals")

    proposed, left_alone = preview.split('id="optimizer-left-alone"')
    assert "Worse A" in proposed and "Better" in proposed and "Idle" not in proposed  # idle budgets are not cut
    assert "Idle" in left_alone and "spends 30.00 USD/day of its 100.00 USD budget: not cut" in left_alone
    assert "total unchanged" in preview and "0.00 USD" in preview
    assert "supersedes the account's 1 open proposal" in preview
    assert list(OptimizationRun.objects.values_list("pk", "status")) == [(older.pk, "proposed")]  # nothing saved

    response = operator.post(run_url, {"account": optimizer_account.pk, "_create": "Record"})

    assert response.status_code == 302 and "proposal_batch=" in response["Location"]
    created = OptimizationRun.objects.filter(status="proposed")
    assert created.count() == 3 and sum(run.change_micros for run in created) == 0
    assert OptimizationRun.objects.get(pk=older.pk).status == "rejected"  # superseded, as the optimizer does


def test_run_optimizer_needs_the_advertiser_role(staff_with_role, optimizer_account):
    run_url = reverse("admin:optimization_optimizationrun_run_optimizer")
    viewer = staff_with_role(VIEWER, optimizer_account)
    assert viewer.get(run_url).status_code == 403
    assert viewer.post(run_url, {"account": optimizer_account.pk, "_create": "Record"}).status_code == 403
    assert "Run optimizer" not in page(viewer, reverse("admin:optimization_optimizationrun_changelist"))

    other = AdAccountFactory()
    advertiser = staff_with_role(ADVERTISER, other)
    refused = page(advertiser, run_url, account=optimizer_account.pk, _create="Record")  # not one of theirs
    assert "Select a valid choice" in refused
    assert not OptimizationRun.objects.exists()


def _reallocation_batch(account) -> list[OptimizationRun]:
    campaigns = [CampaignFactory(account=account, name=f"Batch {n}", daily_budget_micros=100_000_000) for n in range(3)]
    changes = (-20_000_000, +12_000_000, +8_000_000)
    return [
        OptimizationRunFactory(
            campaign=campaign, new_budget_micros=100_000_000 + change, proposal=True, proposal_batch="batch-1"
        )
        for campaign, change in zip(campaigns, changes, strict=True)
    ]


def test_approving_part_of_a_reallocation_shows_the_net_change_first(operator):
    runs = _reallocation_batch(AdAccountFactory(currency_code="USD"))

    warning = page(
        operator,
        reverse("admin:optimization_optimizationrun_changelist"),
        action="approve_proposals",
        _selected_action=[runs[1].pk],
    )

    assert "keeps the account's total daily budget unchanged only when approved whole" in warning
    assert "12.00 USD" in warning and "Approve all 3 of this reallocation" in warning
    for run in runs:
        assert f'value="{run.pk}"' in warning  # the whole batch is one button away
    assert set(OptimizationRun.objects.values_list("status", flat=True)) == {"proposed"}


def test_approving_a_whole_reallocation_asks_nothing_more(operator):
    runs = _reallocation_batch(AdAccountFactory(currency_code="USD"))
    response = operator.post(
        reverse("admin:optimization_optimizationrun_changelist"),
        {"action": "approve_proposals", "_selected_action": [run.pk for run in runs]},
    )
    assert response.status_code == 302  # straight to the approvals (the platform answers each)


def test_an_admin_of_the_account_may_use_every_change_tool(staff_with_role, abo_campaign):
    admin_client = staff_with_role(ADMIN, abo_campaign.account)
    group = abo_campaign.ad_groups.get(name="Daily ad set")
    assert admin_client.get(url(group, "budget")).status_code == 200
    assert admin_client.get(url(abo_campaign, "status")).status_code == 200


# --- Through the sandbox: check, change, applied ------------------------------------------------------


def record_page(client, run: OptimizationRun) -> str:
    return page(client, reverse("admin:optimization_optimizationrun_change", args=[run.pk]))


def test_a_google_budget_is_checked_then_changed_then_applied(
    operator, google_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(google_account)
    amount = f"{(campaign.daily_budget_micros + 5_000_000) / 1_000_000:.2f}"
    form = {"daily_budget": amount, "reason": "More room for a strong week"}

    checked = page(operator, url(campaign, "budget"), **form, _check="Check with Google")
    assert 'data-verdict="valid"' in checked and "Google Ads accepts this change" in checked
    assert not OptimizationRun.objects.exists()

    with django_capture_on_commit_callbacks(execute=False) as pushes:
        response = operator.post(url(campaign, "budget"), {**form, "_change": "Change budget"})
    assert response.status_code == 302 and response["Location"] == url(campaign, "change")
    run = OptimizationRun.objects.get()
    assert (run.kind, run.level, run.status) == ("budget", "campaign", "pending")
    assert "Pending (being pushed)" in record_page(operator, run)

    for push in pushes:
        push()

    run.refresh_from_db()
    assert run.status == "applied"
    assert "Applied (platform confirmed)" in record_page(operator, run)
    assert f"{amount} USD / day" in page(operator, url(campaign, "change"))
    confirmed = get_platform("google").get_campaign(google_account, campaign.external_id).daily_budget_micros
    assert confirmed == run.new_budget_micros


def test_a_meta_ad_set_budget_is_changed_on_its_ad_set(
    operator, meta_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    group = (
        AdGroup.objects.filter(account=meta_account, status="enabled", daily_budget_micros__gt=0)
        .order_by("external_id")
        .first()
    )
    assert group is not None, "the sandbox keeps ABO ad sets with daily budgets"
    campaign_page = page(operator, url(group.campaign, "change"))
    assert url(group, "budget") in campaign_page  # the ABO campaign points to its ad sets' forms
    amount = f"{(group.daily_budget_micros + 2_000_000) / 1_000_000:.2f}"

    checked = page(operator, url(group, "budget"), daily_budget=amount, reason="Scale the winner", _check="Check")
    assert 'data-verdict="valid"' in checked and "Meta accepts this change" in checked

    with django_capture_on_commit_callbacks(execute=True):
        operator.post(url(group, "budget"), {"daily_budget": amount, "reason": "Scale the winner", "_change": "x"})

    run = OptimizationRun.objects.get()
    assert (run.level, run.ad_group_id, run.status) == ("ad_group", group.pk, "applied")
    assert (
        get_platform("meta").get_ad_group(meta_account, group.external_id).daily_budget_micros == run.new_budget_micros
    )


def test_a_lifetime_budget_below_spend_is_refused_by_the_check_and_nothing_is_written(operator, meta_account, sandbox):
    campaign = Campaign.objects.filter(account=meta_account, budget_micros__isnull=False, status="enabled").first()
    assert campaign is not None and campaign.budget_remaining_micros is not None
    spent = campaign.budget_micros - campaign.budget_remaining_micros
    below = f"{(spent - 100_000_000) / 1_000_000:.2f}"

    refused = page(operator, url(campaign, "budget"), lifetime_budget=below, reason="Trim", _check="Check with Meta")
    assert 'data-verdict="invalid"' in refused and "already spent" in refused

    # Not knowing the spend here, the platform itself refuses it.
    Campaign.objects.filter(pk=campaign.pk).update(budget_remaining_micros=None)
    refused_there = page(
        operator,
        url(campaign, "budget"),
        lifetime_budget=below,
        reason="Trim",
        confirm_large_change="on",
        _check="Check",
    )
    assert 'data-verdict="invalid"' in refused_there and "Meta:" in refused_there
    assert not OptimizationRun.objects.exists()


def test_pause_a_campaign_check_then_pause_then_applied(
    operator, google_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(google_account)
    status_url = url(campaign, "status")
    checked = page(operator, status_url, status="paused", reason="Overspending today", _check="Check with Google")
    assert 'data-verdict="valid"' in checked
    assert not OptimizationRun.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(status_url, {"status": "paused", "reason": "Overspending today", "_change": "Pause"})

    assert response.status_code == 302
    run = OptimizationRun.objects.get()
    assert (run.kind, run.old_status, run.new_status, run.status) == ("status", "enabled", "paused", "applied")
    assert get_platform("google").get_campaign(google_account, campaign.external_id).status == "paused"
    assert "Enable campaign" in page(operator, url(campaign, "change"))


def test_bulk_pause_makes_one_change_record_per_ad_set(
    operator, meta_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    groups = list(AdGroup.objects.filter(account=meta_account, status="enabled").order_by("external_id")[:2])
    ids = [str(group.pk) for group in groups]

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            reverse(AD_GROUP_LIST),
            {"action": "pause_selected", "_selected_action": ids, "post": "yes", "reason": "Account overspend"},
            follow=True,
        )

    assert "2 change record(s) to paused" in response.content.decode()
    runs = OptimizationRun.objects.order_by("pk")
    assert [(run.ad_group_id, run.status) for run in runs] == [(group.pk, "applied") for group in groups]
    for group in groups:
        assert get_platform("meta").get_ad_group(meta_account, group.external_id).status == "paused"
