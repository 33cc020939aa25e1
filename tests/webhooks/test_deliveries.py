"""Deliveries: the CRM gets each lead once, signed; retries on 5xx and timeouts; 4xx is final."""

from __future__ import annotations

import json

import pytest
from django.core import mail

from tests.webhooks.conftest import CRM_SIGNING_SECRET
from tests.webhooks.factories import DestinationFactory, LeadDeliveryFactory, LeadFactory
from webhooks import services, tasks
from webhooks.models import Lead, LeadDelivery

CAP = 900


@pytest.fixture
def lead(db, relay_source) -> Lead:
    """An urgent lead from a Make.com relay."""
    return LeadFactory(
        source=relay_source,
        external_lead_id="crm-1",
        phone="+16505550199",
        priority="urgent",
        custom_answers={"budget": "12000"},
    )


def test_crm_fails_twice_then_succeeds_and_is_delivered_once(lead, crm_destination, crm_receiver):
    crm_receiver.script = [503, 500]
    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)

    for _ in range(2):
        with pytest.raises(services.DeliveryTemporaryError) as raised:
            services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
        assert 0 < raised.value.retry_in_seconds <= CAP
        delivery.refresh_from_db()
        assert (delivery.status, delivery.response_code) == ("pending", raised.value.response_code)
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    # The broker redelivers the task (acks_late, a worker restart): nothing is sent again.
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    tasks.deliver_lead.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
    assert len(crm_receiver.requests) == 3
    assert [json.loads(r["body"])["id"] for r in crm_receiver.requests] == [lead.pk] * 3
    assert {r["headers"]["webhook-id"] for r in crm_receiver.requests} == {str(lead.pk)}


def test_crm_post_is_signed_the_standard_webhooks_way(lead, crm_destination, crm_receiver):
    services.lead_delivery_send(
        delivery_id=LeadDeliveryFactory(lead=lead, destination=crm_destination).pk, max_delay_seconds=CAP
    )
    request = crm_receiver.requests[0]
    headers = request["headers"]
    expected = services.standard_webhook_signature(
        secret=CRM_SIGNING_SECRET,
        msg_id=headers["webhook-id"],
        timestamp=int(headers["webhook-timestamp"]),
        body=request["body"],
    )
    assert headers["webhook-signature"] == expected
    assert headers["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert (body["lead_id"], body["priority"], body["phone"]) == ("crm-1", "urgent", "+16505550199")


def test_the_celery_task_retries_until_delivered(lead, crm_destination, crm_receiver):
    crm_receiver.script = [502, 503]
    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)
    # apply() runs the task here, retries included (eagerly, without the countdown).
    tasks.deliver_lead.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert len(crm_receiver.requests) == 3


def test_4xx_is_final(lead, crm_destination, crm_receiver):
    crm_receiver.script = [422]
    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)
    tasks.deliver_lead.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code, delivery.last_error) == ("failed", 422, "HTTP 422")
    assert len(crm_receiver.requests) == 1


def test_timeout_is_retried(lead, crm_destination, crm_receiver, settings):
    settings.LEAD_DELIVERY_TIMEOUT_SECONDS = 0.2
    crm_receiver.delay_seconds = 0.5
    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)
    with pytest.raises(services.DeliveryTemporaryError) as raised:
        services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    assert str(raised.value) == "ReadTimeout"
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert crm_receiver.url not in delivery.last_error  # URLs can be secrets: never stored in errors


def test_unreachable_crm_is_retried_then_given_up(lead, db):
    closed = DestinationFactory(name="Down", url="http://127.0.0.1:9/leads")  # nothing listens there
    delivery = LeadDeliveryFactory(lead=lead, destination=closed)
    delivery.attempts = services.MAX_DELIVERY_ATTEMPTS - 1
    delivery.save()
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "ConnectionError")


def test_a_delivery_held_by_another_worker_is_not_sent_in_parallel(lead, crm_destination, crm_receiver):
    from datetime import timedelta

    from django.utils import timezone

    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)
    LeadDelivery.objects.filter(pk=delivery.pk).update(
        status="sending", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    assert crm_receiver.requests == []
    # The other worker died: once its lease expires, the delivery is taken over.
    LeadDelivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    assert len(crm_receiver.requests) == 1


def test_backoff_grows_and_is_capped():
    delays = [services.retry_delay_seconds(attempt=n, cap_seconds=CAP) for n in range(1, 12)]
    assert 8 <= delays[0] <= 12
    assert delays[3] > delays[0]
    assert max(delays) <= CAP
    assert services.retry_delay_seconds(attempt=1, cap_seconds=CAP, retry_after=7200) == CAP


def test_email_notification(lead, email_destination):
    services.lead_delivery_send(
        delivery_id=LeadDeliveryFactory(lead=lead, destination=email_destination).pk, max_delay_seconds=CAP
    )
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["sales@example.com", "oncall@example.com"]
    assert message.subject == f"[Urgent] New lead #{lead.pk}"
    assert "+16505550199" in message.body
    assert "budget: 12000" in message.body


def test_slack_compatible_webhook(lead, crm_receiver, db):
    slack = DestinationFactory(slack=True, name="Slack", url=crm_receiver.url)
    delivery = services.lead_delivery_send(
        delivery_id=LeadDeliveryFactory(lead=lead, destination=slack).pk, max_delay_seconds=CAP
    )
    assert delivery.status == "delivered"
    text = json.loads(crm_receiver.requests[0]["body"])["text"]
    assert text.startswith(f"*New urgent lead #{lead.pk}*")
    assert "webhook-signature" not in crm_receiver.requests[0]["headers"]


def test_retry_failed_deliveries(lead, crm_destination, crm_receiver, django_capture_on_commit_callbacks):
    crm_receiver.script = [400]
    delivery = LeadDeliveryFactory(lead=lead, destination=crm_destination)
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    assert services.lead_deliveries_retry(lead=lead) == 1
    services.lead_delivery_send(delivery_id=delivery.pk, max_delay_seconds=CAP)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
