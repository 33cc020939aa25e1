"""Closing the loop: a lead at or past the conversion stage becomes one Google conversion,
by its click id or, without one, by its hashed email and phone (enhanced conversions for leads)."""

from __future__ import annotations

import hashlib

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
    advertiser_client, lead, settings, django_capture_on_commit_callbacks
):
    settings.LEAD_CONVERSION_STAGE = "won"
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            advertiser_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "qualified"}, format="json").status_code
            == 200
        )
    assert Conversion.objects.count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert advertiser_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "won"}, format="json").status_code == 200
    assert Conversion.objects.get().order_id == f"lead-{lead.pk}"
    lead.refresh_from_db()
    assert (lead.stage, lead.conversion_created_at is not None) == ("won", True)


# --- Every stage past the conversion stage, and leads without a click ------------------------------


def test_straight_to_won_skipping_qualified_converts(lead, django_capture_on_commit_callbacks, settings):
    settings.LEAD_CONVERSION_STAGE = "qualified"
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="won")
    conversion = Conversion.objects.get()
    assert (conversion.order_id, conversion.click_id_type) == (f"lead-{lead.pk}", "gclid")
    assert conversion.payload["gclid"] == "Cj0KCQiA-test-gclid"


@pytest.mark.parametrize("stage", ["contacted", "lost"])
def test_stages_before_the_conversion_stage_or_off_the_path_do_not_convert(
    lead, django_capture_on_commit_callbacks, stage
):
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage=stage)
    assert not Conversion.objects.exists()


def test_a_lead_with_a_gbraid_converts_with_it(lead, django_capture_on_commit_callbacks):
    Lead.objects.filter(pk=lead.pk).update(gclid="", gbraid="GBRAID-0123")
    lead.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="qualified")
    conversion = Conversion.objects.get()
    assert conversion.click_id_type == "gbraid"
    assert conversion.payload["gbraid"] == "GBRAID-0123"


def test_a_lead_without_a_click_converts_on_its_hashed_email_and_phone(lead, django_capture_on_commit_callbacks):
    Lead.objects.filter(pk=lead.pk).update(gclid="")
    lead.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="won")
    conversion = Conversion.objects.get()
    assert conversion.click_id_type == ""
    assert not {"gclid", "gbraid", "wbraid"} & set(conversion.payload)
    assert conversion.hashed_email == hashlib.sha256(b"ada.lovelace@example.com").hexdigest()
    assert conversion.hashed_phone == hashlib.sha256(b"+14155550100").hexdigest()


def test_a_lead_with_only_a_name_cannot_convert_and_stays_open(lead, django_capture_on_commit_callbacks):
    Lead.objects.filter(pk=lead.pk).update(gclid="", email="", phone="")
    lead.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.lead_stage_set(lead=lead, stage="won")
    assert not Conversion.objects.exists()
    lead.refresh_from_db()
    assert lead.conversion_created_at is None


def test_gbraid_and_wbraid_are_read_from_the_relay_body(relay_source):
    data = services.lead_data_from_payload({"email": "a@example.org", "gbraid": "GB-1", "wbraid": "WB-1"})
    assert (data.gclid, data.gbraid, data.wbraid) == ("", "GB-1", "WB-1")
    assert "gbraid" not in data.custom_answers
