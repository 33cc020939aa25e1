"""Closing the loop: a lead with a gclid reaching the conversion stage becomes one Google conversion."""

from __future__ import annotations

import pytest
from django.utils import timezone

from conversions.models import Conversion, ConversionAction
from tests.campaigns.factories import AdAccountFactory, CampaignFactory
from webhooks import services
from webhooks.models import Lead

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(relay_source):
    """A processed lead from a Google campaign whose account has a conversion action."""
    account = AdAccountFactory(platform="google", external_id="1234567890")
    ConversionAction.objects.create(account=account, external_id="880000002", name="Lead form")
    campaign = CampaignFactory(account=account)
    return Lead.objects.create(
        source=relay_source,
        external_lead_id="lead-77",
        full_name="Ada Lovelace",
        email="Ada.Lovelace@Example.com",
        phone="+14155550100",
        gclid="Cj0KCQiA-test-gclid",
        campaign=campaign,
        received_at=timezone.now(),
    )


def test_reaching_the_stage_creates_one_conversion_with_the_lead_as_order(lead, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="qualified")
    conversion = Conversion.objects.get()
    assert conversion.platform == "google"
    assert conversion.action.external_id == "880000002"
    assert conversion.order_id == f"lead-{lead.pk}"
    assert "Ada.Lovelace" not in str(conversion.__dict__)  # hashed at the door
    lead.refresh_from_db()
    assert lead.conversion_created_at is not None

    # Back and forth through the stage never makes a second conversion.
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="contacted")
        services.lead_stage_set(lead=lead, stage="qualified")
    assert Conversion.objects.count() == 1


def test_without_a_conversion_action_the_lead_waits(lead, django_capture_on_commit_callbacks):
    ConversionAction.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="qualified")
    assert Conversion.objects.count() == 0
    lead.refresh_from_db()
    assert lead.conversion_created_at is None


def test_through_the_api_only_the_configured_stage_makes_the_conversion(
    auth_client, lead, settings, django_capture_on_commit_callbacks
):
    settings.LEAD_CONVERSION_STAGE = "won"
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "qualified"}, format="json").status_code == 200
    assert Conversion.objects.count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "won"}, format="json").status_code == 200
    assert Conversion.objects.get().order_id == f"lead-{lead.pk}"
    lead.refresh_from_db()
    assert (lead.stage, lead.conversion_created_at is not None) == ("won", True)
