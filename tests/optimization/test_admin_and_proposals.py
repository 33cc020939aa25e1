"""The operator's side: the budget form end to end through the sandbox, proposals, the audit trail."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns.access import ADVERTISER, VIEWER, account_access_grant
from campaigns.models import Campaign
from optimization import services
from optimization.models import AccountBudgetSettings, OptimizationRun
from platforms.registry import get_platform
from tests.campaigns.factories import CampaignFactory
from tests.optimization.conftest import own_budget_campaign, sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, staff_user):
    """A browser session of the staff superuser in Django admin."""
    client.force_login(staff_user)
    return client


def budget_form_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_budget", args=[campaign.pk])


def test_staff_budget_form_changes_the_sandbox_budget_and_the_next_sync_shows_it(
    operator, google_account, sandbox, eager_tasks, django_capture_on_commit_callbacks
):
    campaign = own_budget_campaign(google_account)
    page = operator.get(budget_form_url(campaign))
    assert page.status_code == 200
    assert b"Pacing context" in page.content and b"Spend this month" in page.content

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            budget_form_url(campaign), {"daily_budget": "123.45", "reason": "Holiday push, agreed with sales"}
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    run = OptimizationRun.objects.get()
    assert (run.source, run.status, run.new_budget_micros) == ("staff", "applied", 123_450_000)
    assert (
        sandbox.google.state.budget_amount(
            sandbox.google.state.data.budget(int(google_account.external_id), int(campaign.budget_external_id))
        )
        == 123_450_000
    )

    Campaign.objects.filter(pk=campaign.pk).update(daily_budget_micros=1)  # forget it locally…
    sync(google_account)  # …the next sync reads it back from the platform
    campaign.refresh_from_db()
    assert campaign.daily_budget_micros == 123_450_000
    change_page = operator.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert b"Change records" in change_page.content and b"Holiday push" in change_page.content


def test_the_budget_form_shows_each_guard_as_a_form_error(operator, google_account):
    campaign = own_budget_campaign(google_account)
    url = budget_form_url(campaign)

    no_reason = operator.post(url, {"daily_budget": "50.00", "reason": ""})
    large = operator.post(url, {"daily_budget": str(campaign.daily_budget_micros * 3 / 1_000_000), "reason": "x"})
    fraction = operator.post(url, {"daily_budget": "50.005", "reason": "x"})

    assert no_reason.status_code == 200 and "This field is required" in no_reason.content.decode()
    assert "beyond ±50%" in large.content.decode()
    assert "not a whole number of USD minimum units" in fraction.content.decode()
    assert not OptimizationRun.objects.exists()


def test_the_budget_form_needs_the_advertiser_role_on_the_campaigns_account(client, django_user_model, google_account):
    campaign = own_budget_campaign(google_account)
    staff = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    client.force_login(staff)
    assert client.get(budget_form_url(campaign)).status_code == 404  # no role: the campaign is not there

    account_access_grant(user=staff, account=google_account, role=VIEWER)
    assert client.get(budget_form_url(campaign)).status_code == 403
    assert client.post(budget_form_url(campaign), {"daily_budget": "999", "reason": "x"}).status_code == 403

    account_access_grant(user=staff, account=google_account, role=ADVERTISER)
    assert client.get(budget_form_url(campaign)).status_code == 200
    assert not OptimizationRun.objects.exists()


def test_the_campaign_form_cannot_edit_the_budget_directly(operator, db):
    campaign = CampaignFactory()
    page = operator.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'name="daily_budget_micros"' not in page
    assert "Change daily budget" in page


def test_runs_are_append_only_in_admin(operator, db):
    campaign = CampaignFactory()
    run = OptimizationRun.objects.create(campaign=campaign, new_budget_micros=1, reason="r", source="api")
    change_url = reverse("admin:optimization_optimizationrun_change", args=[run.pk])

    assert operator.get(change_url).status_code == 200  # readable
    assert b'name="reason"' not in operator.get(change_url).content
    operator.post(change_url, {"reason": "rewritten", "new_budget_micros": 2})
    assert operator.get(reverse("admin:optimization_optimizationrun_add")).status_code == 403
    assert (
        operator.post(reverse("admin:optimization_optimizationrun_delete", args=[run.pk]), {"post": "yes"}).status_code
        == 403
    )
    run.refresh_from_db()
    assert (run.reason, run.new_budget_micros) == ("r", 1)


# --- Proposals ------------------------------------------------------------------------------------


@pytest.fixture
def optimizer_settings(settings, google_account):
    """Targets that split the sandbox's campaigns into better and worse than target."""
    settings.OPTIMIZER_MIN_CONVERSIONS = 0
    snapshot = services.optimizer_snapshot(account=google_account, budget_settings=None)
    cpas = sorted(c.cost_micros / c.conversions for c in snapshot.campaigns if c.status == "enabled" and c.conversions)
    return AccountBudgetSettings.objects.create(
        account=google_account, target_cpa_micros=int(cpas[len(cpas) // 2]), min_campaign_daily_budget_micros=1_000_000
    )


def test_optimizer_run_via_api_proposes_within_guardrails_and_total_unchanged(
    staff_client, google_account, optimizer_settings
):
    response = staff_client.post(
        "/api/v1/optimization/runs/", {"dry_run": True, "account": google_account.pk}, format="json"
    )

    assert response.status_code == 201, response.json()
    proposals = response.json()["results"]
    assert proposals, "the median target leaves campaigns on both sides"
    assert {p["status"] for p in proposals} == {"proposed"}
    assert sum(p["new_budget_micros"] - p["old_budget_micros"] for p in proposals) == 0
    for p in proposals:
        assert abs(p["new_budget_micros"] - p["old_budget_micros"]) <= p["old_budget_micros"] * Decimal("0.2")
        assert "CPA" in p["reason"] and "target" in p["reason"]
    ids = {p["campaign"] for p in proposals}
    assert not Campaign.objects.filter(pk__in=ids).exclude(status="enabled").exists()
    assert not Campaign.objects.filter(pk__in=ids, budget_is_shared=True).exists()

    again = staff_client.post("/api/v1/optimization/runs/", {"account": google_account.pk}, format="json").json()
    assert OptimizationRun.objects.filter(status="proposed").count() == again["count"]  # older ones superseded


def test_applying_a_proposal_pushes_it(
    staff_client, google_account, optimizer_settings, eager_tasks, django_capture_on_commit_callbacks
):
    proposal = services.optimizer_run(account=google_account)[0]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/api/v1/optimization/runs/{proposal.pk}/apply/")

    assert response.status_code == 202, response.json()
    proposal.refresh_from_db()
    assert proposal.status == "applied" and proposal.decided_by.username == "operator"
    campaign = proposal.campaign
    info = get_platform("google").get_campaign(google_account, campaign.external_id)
    assert info.daily_budget_micros == proposal.new_budget_micros

    again = staff_client.post(f"/api/v1/optimization/runs/{proposal.pk}/apply/")
    assert again.status_code == 409


def test_an_outdated_proposal_is_refused(staff_client, google_account, optimizer_settings):
    proposal = services.optimizer_run(account=google_account)[0]
    Campaign.objects.filter(pk=proposal.campaign_id).update(daily_budget_micros=proposal.old_budget_micros + 10_000)

    response = staff_client.post(f"/api/v1/optimization/runs/{proposal.pk}/apply/")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "proposal_outdated"


def test_auto_apply_pushes_proposals_without_approval(
    google_account, optimizer_settings, eager_tasks, django_capture_on_commit_callbacks
):
    optimizer_settings.auto_apply = True
    optimizer_settings.save()

    with django_capture_on_commit_callbacks(execute=True):
        runs = services.optimizer_run(account=google_account)

    assert runs and {OptimizationRun.objects.get(pk=r.pk).status for r in runs} == {"applied"}


def test_admin_proposals_show_impact_per_account_and_reject(operator, google_account, optimizer_settings):
    proposals = services.optimizer_run(account=google_account)
    changelist = reverse("admin:optimization_optimizationrun_changelist")

    page = operator.get(changelist).content.decode()
    assert "total impact per account" in page and google_account.name in page and "0.00 USD" in page

    operator.post(changelist, {"action": "reject_proposals", "_selected_action": [p.pk for p in proposals]})
    assert set(OptimizationRun.objects.values_list("status", flat=True)) == {"rejected"}


def test_admin_approve_action(
    operator, google_account, optimizer_settings, eager_tasks, django_capture_on_commit_callbacks
):
    """One proposal of a reallocation: the total would move, so admin says by how much first;
    approved anyway, it is pushed."""
    proposal = services.optimizer_run(account=google_account)[0]
    changelist = reverse("admin:optimization_optimizationrun_changelist")

    warning = operator.post(changelist, {"action": "approve_proposals", "_selected_action": [proposal.pk]})
    assert warning.status_code == 200 and b"approved whole" in warning.content
    assert OptimizationRun.objects.get(pk=proposal.pk).status == "proposed"

    with django_capture_on_commit_callbacks(execute=True):
        operator.post(changelist, {"action": "approve_proposals", "_selected_action": [proposal.pk], "post": "yes"})

    proposal.refresh_from_db()
    assert proposal.status == "applied"


def test_account_settings_are_typed_in_currency_units(operator, google_account):
    response = operator.post(
        reverse("admin:optimization_accountbudgetsettings_add"),
        {
            "account": google_account.pk,
            "max_campaign_daily_budget_micros": "250.50",
            "monthly_budget_micros": "9000",
            "target_cpa_micros": "",
            "target_roas": "",
            "min_campaign_daily_budget_micros": "",
            "optimizer_enabled": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    saved = AccountBudgetSettings.objects.get()
    assert (saved.max_campaign_daily_budget_micros, saved.monthly_budget_micros) == (250_500_000, 9_000_000_000)
