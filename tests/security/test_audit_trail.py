"""The audit trail keeps its word: names outlive users, guardrail edits are recorded and need the
account's admin, and what the platforms own cannot be added, edited or deleted in admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from campaigns.access import ADMIN, ADVERTISER, account_access_grant
from campaigns.models import AdAccount, Campaign, DailyMetric
from optimization.models import AccountBudgetSettings, GuardrailChange, OptimizationRun
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, add_metrics

pytestmark = pytest.mark.django_db
PASSWORD = "pw-audit-0123456789"


def staff(client, role: str, account: AdAccount):
    user = get_user_model().objects.create_user(f"staff-{role}", password=PASSWORD, is_staff=True)
    account_access_grant(user=user, account=account, role=role)
    client.force_login(user)
    return user


def guardrail_form(settings: AccountBudgetSettings, **changes) -> dict:
    form = {
        "account": settings.account_id,
        "max_campaign_daily_budget_micros": "60",
        "monthly_budget_micros": "",
        "target_cpa_micros": "",
        "target_roas": "",
        "min_campaign_daily_budget_micros": "",
        "optimizer_enabled": "on",
    }
    form.update(changes)
    return form


def test_a_budget_change_keeps_its_requesters_name_after_the_user_is_deleted(advertiser_client):
    campaign = CampaignFactory()
    run = OptimizationRun.objects.create(
        campaign=campaign,
        new_budget_micros=1,
        reason="r",
        source="api",
        requested_by=advertiser_client.user,
        requested_by_name=advertiser_client.user.get_username(),
    )
    advertiser_client.user.delete()
    run.refresh_from_db()
    assert run.requested_by is None and run.requested_by_name == "advertiser"


def test_an_advertiser_cannot_raise_the_guardrails_and_nothing_changes(client):
    account = AdAccountFactory()
    settings = AccountBudgetSettings.objects.create(account=account, max_campaign_daily_budget_micros=60_000_000)
    staff(client, ADVERTISER, account)
    url = reverse("admin:optimization_accountbudgetsettings_change", args=[settings.pk])

    page = client.get(url)
    assert page.status_code == 200 and b'name="max_campaign_daily_budget_micros"' not in page.content  # read-only
    client.post(url, guardrail_form(settings, max_campaign_daily_budget_micros="1000000", auto_apply="on"))

    settings.refresh_from_db()
    assert (settings.max_campaign_daily_budget_micros, settings.auto_apply) == (60_000_000, False)
    assert not GuardrailChange.objects.exists()


def test_the_accounts_admin_changes_guardrails_and_each_change_is_recorded(client):
    account = AdAccountFactory()
    settings = AccountBudgetSettings.objects.create(account=account, max_campaign_daily_budget_micros=60_000_000)
    admin_user = staff(client, ADMIN, account)
    url = reverse("admin:optimization_accountbudgetsettings_change", args=[settings.pk])

    response = client.post(url, guardrail_form(settings, max_campaign_daily_budget_micros="75", auto_apply="on"))
    assert response.status_code == 302, response.content.decode()[:2000]

    changes = {c.field: (c.old_value, c.new_value, c.changed_by_name) for c in GuardrailChange.objects.all()}
    assert changes == {
        "max_campaign_daily_budget_micros": ("60000000", "75000000", admin_user.get_username()),
        "auto_apply": ("False", "True", admin_user.get_username()),
    }
    admin_user.delete()
    assert set(GuardrailChange.objects.values_list("changed_by_name", flat=True)) == {"staff-admin"}


def test_synced_rows_cannot_be_added_edited_or_deleted_in_admin(client, staff_user):
    campaign = CampaignFactory(name="Brand", status="enabled")
    add_metrics(campaign, days=1, end=campaign.created_at.date())
    metric = DailyMetric.objects.get()
    client.force_login(staff_user)  # even a superuser: the platform owns these rows

    assert client.get(reverse("admin:campaigns_adaccount_add")).status_code == 403
    assert client.get(reverse("admin:campaigns_campaign_add")).status_code == 403
    for name, pk in (
        ("campaigns_adaccount", campaign.account_id),
        ("campaigns_campaign", campaign.pk),
        ("campaigns_dailymetric", metric.pk),
    ):
        assert client.post(reverse(f"admin:{name}_delete", args=[pk]), {"post": "yes"}).status_code == 403
    client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), {"name": "Renamed", "status": "paused"})
    account_page = client.get(reverse("admin:campaigns_adaccount_change", args=[campaign.account_id])).content
    assert b'name="external_id"' not in account_page and b'name="currency_code"' not in account_page

    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Brand", "enabled")
    assert Campaign.objects.count() == 1 and DailyMetric.objects.count() == 1 and AdAccount.objects.count() == 1
