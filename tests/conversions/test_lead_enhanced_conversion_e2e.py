"""The lead loop end to end through the Google sandbox: a form lead with only an email, moved to
won through the API, is uploaded once as an enhanced conversion for leads (hashed email, no gclid)."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import urlencode

import pytest

from conversions import services as conversion_services
from conversions.models import Conversion
from webhooks import services
from webhooks.models import WebhookSource

RELAY_SECRET = "relay-secret-for-the-loop-0123456789"

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay_source(db) -> WebhookSource:
    """The Make.com/Zapier source, known to every process through the shared cache."""
    source = WebhookSource.objects.create(name="zapier", kind=WebhookSource.Kind.RELAY, secret=RELAY_SECRET)
    services.webhook_sources_invalidate()
    return source


def test_email_only_lead_won_is_uploaded_once_as_an_enhanced_conversion_for_leads(
    api_client, advertiser_client, relay_source, actions, sandbox, settings, django_capture_on_commit_callbacks
):
    settings.LEAD_CONVERSION_ACTION = "880000002"  # the sandbox customer's lead action
    settings.LEAD_CONVERSION_STAGE = "qualified"
    lead_id = f"email-only-{uuid.uuid4().hex[:12]}"  # the sandbox outlives a test: unique per run
    response = api_client.generic(
        "POST",
        "/api/v1/webhooks/zapier",
        urlencode({"lead_id": lead_id, "email": " Grace.Hopper@Example.com ", "answers[budget]": "9000"}).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Webhook-Secret": RELAY_SECRET},
    )
    assert response.status_code == 202
    lead = services.webhook_event_process(event_id=response.json()["id"])
    assert (lead.gclid, lead.phone, lead.email) == ("", "", "grace.hopper@example.com")

    def move(stage: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert (
                advertiser_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": stage}, format="json").status_code == 200
            )

    move("won")  # straight past qualified
    conversion = Conversion.objects.get()
    assert conversion.order_id == f"lead-{lead.pk}"
    assert conversion_services.conversions_upload_pending().requests == 1
    conversion.refresh_from_db()
    assert conversion.status == Conversion.Status.UPLOADED, conversion.platform_message

    copies = [c for c in sandbox.google.state.conversions if c.order_id == f"lead-{lead.pk}"]
    assert len(copies) == 1
    (stored,) = copies
    assert (stored.gclid, stored.gbraid, stored.wbraid) == ("", "", "")
    assert stored.hashed_emails == (hashlib.sha256(b"grace.hopper@example.com").hexdigest(),)
    assert stored.conversion_action_id == 880000002

    # Back and forth past the stage: no second conversion, nothing more uploaded.
    move("qualified")
    move("won")
    assert Conversion.objects.count() == 1
    assert conversion_services.conversions_upload_pending().requests == 0
    assert sum(1 for c in sandbox.google.state.conversions if c.order_id == f"lead-{lead.pk}") == 1
