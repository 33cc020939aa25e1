"""Every model's admin pages load for a staff user (list, and change page of a real row)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.urls import reverse

from campaigns.models import AdAccount, Campaign, DailyMetric, SyncRun
from optimization.models import OptimizationRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each(staff_user):
    """One row of every model, so change pages have something to show."""
    account = AdAccount.objects.create(
        platform="google", external_id="1234567890", name="Acme US", currency_code="USD", time_zone="America/New_York"
    )
    campaign = Campaign.objects.create(
        account=account, platform="google", external_id="111", name="Brand", daily_budget_micros=50_000_000
    )
    DailyMetric.objects.create(campaign=campaign, date=dt.date(2026, 11, 1), impressions=10, clicks=2, cost_micros=1)
    SyncRun.objects.create(account=account)
    OptimizationRun.objects.create(
        campaign=campaign,
        old_budget_micros=1,
        new_budget_micros=2,
        reason="test",
        source="staff",
        requested_by=staff_user,
    )


def test_every_registered_model_lists_and_opens(client, staff_user, one_of_each):
    client.force_login(staff_user)
    assert client.get("/admin/").status_code == 200
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = client.get(changelist, follow=True)  # a one-row settings page redirects to its form
        assert response.status_code == 200, f"{changelist} → {response.status_code}"
        instance = model._default_manager.first()
        if instance is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk])
            assert client.get(change).status_code == 200, change
        if model_admin.has_add_permission(response.wsgi_request):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert client.get(add).status_code == 200, add


def test_budget_audit_trail_cannot_be_edited_or_deleted(client, staff_user, one_of_each):
    client.force_login(staff_user)
    run = OptimizationRun.objects.get()
    change = reverse("admin:optimization_optimizationrun_change", args=[run.pk])
    response = client.post(change, {"reason": "rewritten"})
    assert response.status_code == 403
    delete = reverse("admin:optimization_optimizationrun_delete", args=[run.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert run.reason == "test"


def test_admin_names_its_models_in_plain_english():
    from django.apps import apps

    plurals = {str(model._meta.verbose_name_plural) for model in apps.get_models()}
    assert "lead deliveries" in plurals
    assert not [p for p in plurals if p.endswith("ys") and not p.endswith(("keys", "days"))], plurals
