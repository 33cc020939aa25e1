"""Outgoing rotation: after a rotation the CRM gets both signatures until the old secret expires."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from tests.webhooks.conftest import CRM_SIGNING_SECRET
from tests.webhooks.factories import LeadDeliveryFactory, LeadFactory
from webhooks import services
from webhooks.models import Lead

CAP = 60.0


@pytest.fixture
def lead(db, relay_source) -> Lead:
    return LeadFactory(source=relay_source, external_lead_id="crm-rotation", phone="+16505550199")


def _signatures_sent(lead, destination, receiver) -> tuple[list[str], dict, bytes]:
    services.lead_delivery_send(
        delivery_id=LeadDeliveryFactory(lead=lead, destination=destination).pk, max_delay_seconds=CAP
    )
    request = receiver.requests[-1]
    return request["headers"]["webhook-signature"].split(" "), request["headers"], request["body"]


def _signature(secret: str, headers: dict, body: bytes) -> str:
    return services.standard_webhook_signature(
        secret=secret, msg_id=headers["webhook-id"], timestamp=int(headers["webhook-timestamp"]), body=body
    )


def test_during_the_grace_period_both_secrets_sign(lead, crm_destination, crm_receiver):
    new_secret = services.destination_rotate_signing_secret(crm_destination)
    crm_destination.refresh_from_db()
    assert (crm_destination.signing_secret, crm_destination.previous_signing_secret) == (
        new_secret,
        CRM_SIGNING_SECRET,
    )

    signatures, headers, body = _signatures_sent(lead, crm_destination, crm_receiver)

    assert signatures == [_signature(new_secret, headers, body), _signature(CRM_SIGNING_SECRET, headers, body)]
    # A receiver using the package with only the new secret accepts the request.
    assert Webhook(new_secret).verify(body, headers) == json.loads(body)


def test_after_the_grace_period_only_the_new_secret_signs(lead, crm_destination, crm_receiver):
    new_secret = services.destination_rotate_signing_secret(crm_destination, grace=timedelta(0))
    crm_destination.refresh_from_db()

    signatures, headers, body = _signatures_sent(lead, crm_destination, crm_receiver)

    assert signatures == [_signature(new_secret, headers, body)]


def test_rotating_a_destination_without_a_secret_keeps_no_previous_one(crm_destination):
    crm_destination.signing_secret = ""
    crm_destination.save()
    new_secret = services.destination_rotate_signing_secret(crm_destination)
    crm_destination.refresh_from_db()
    assert new_secret.startswith("whsec_")
    assert (crm_destination.previous_signing_secret, crm_destination.previous_signing_secret_expires_at) == ("", None)


def test_admin_action_rotates_and_shows_the_new_secret_once(admin_client, crm_destination):
    response = admin_client.post(
        "/admin/webhooks/destination/",
        {"action": "rotate_signing_secret", "_selected_action": [crm_destination.pk]},
        follow=True,
    )
    crm_destination.refresh_from_db()
    assert crm_destination.previous_signing_secret == CRM_SIGNING_SECRET
    assert crm_destination.signing_secrets(crm_destination.updated_at) == [
        crm_destination.signing_secret,
        CRM_SIGNING_SECRET,
    ]
    assert [str(m) for m in response.context["messages"]] == [
        f"CRM: new signing secret {crm_destination.signing_secret}"
    ]
