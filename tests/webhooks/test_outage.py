"""A broker outage delays leads and loses none: the request answers, the sweeper catches up."""

from __future__ import annotations

import time

from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json, switch_broker
from webhooks import services, tasks
from webhooks.models import Destination, LeadDelivery, RoutingRule, WebhookEvent

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def test_broker_down_during_receipt_then_processed_after_it_returns(
    api_client, relay_source, settings, django_capture_on_commit_callbacks
):
    switch_broker(settings, UNREACHABLE_BROKER)

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET}
        )
    elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert elapsed < 1.0, f"the request waited {elapsed:.2f}s on the broker"
    services.background_publisher.join()  # the publish attempt failed in the background
    assert services.broker_circuit.is_open()
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert event.status == WebhookEvent.Status.RECEIVED

    # While the broker is down the sweeper tries and loses nothing.
    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 1
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED

    # The broker is back.
    switch_broker(settings, "memory://")
    WebhookEvent.objects.filter(pk=event.pk).update(swept_at=None)
    assert services.enqueue_event_processing(event_id=event.pk) is True
    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 1
    tasks.process_webhook_events([event.pk])  # what the worker runs for the re-enqueued message
    tasks.process_webhook_events([event.pk])  # and again, as a redelivered duplicate: a no-op
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.lead is not None


def test_sweeper_skips_fresh_and_recently_swept_events(api_client, relay_source):
    response = post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    assert services.webhook_backlog_sweep(older_than_seconds=60).events == 0  # just arrived: the broker has it
    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 1
    WebhookEvent.objects.filter(pk=response.json()["id"]).update(status=WebhookEvent.Status.PROCESSED)
    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 0


def test_sweeper_re_enqueues_deliveries_never_sent(api_client, relay_source, email_destination):
    rule = RoutingRule.objects.create(name="All", position=1, priority="high")
    rule.destinations.add(email_destination)
    services.routing_rules_invalidate()
    response = post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    lead = services.webhook_event_process(event_id=response.json()["id"])
    assert services.webhook_backlog_sweep(older_than_seconds=0).deliveries == 1
    tasks.deliver_lead.apply(args=[lead.deliveries.get().pk])
    assert lead.deliveries.get().status == LeadDelivery.Status.DELIVERED
    assert services.webhook_backlog_sweep(older_than_seconds=0).deliveries == 0
    assert Destination.objects.count() == 1
