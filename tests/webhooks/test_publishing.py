"""Event ids reach the broker in batches: one Celery message for what arrives together, each id once."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from kombu.simple import SimpleQueue

from adsplatform.celery import app as celery_app
from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json, switch_broker, take_published_tasks
from webhooks import services, tasks
from webhooks.models import Lead, RoutingRule, WebhookEvent


def published_event_batches() -> list[list[int]]:
    """The event ids of each processing message waiting in the (in-memory) broker, taken off it."""
    return [task.args[0] for task in take_published_tasks() if task.name == tasks.process_webhook_events.name]


def received_events(count: int, source) -> list[int]:
    event_ids = []
    for index in range(count):
        payload = flat_payload(lead_id=f"batch-{index}")
        result = services.webhook_event_ingest(
            source=source, raw_body=json.dumps(payload).encode(), headers={}, payload=payload
        )
        event_ids.append(result.event_id)
    return event_ids


def test_events_arriving_together_leave_in_few_messages_each_id_once(relay_source):
    event_ids = received_events(120, relay_source)
    for event_id in event_ids:
        assert services.enqueue_event_processing(event_id=event_id, wait=False)
    services.background_publisher.join()

    batches = published_event_batches()
    published = [event_id for batch in batches for event_id in batch]
    assert sorted(published) == sorted(event_ids)  # none lost, none twice
    assert len(batches) == 3  # 50 + 50 + 20: submitted within one linger, split at the cap
    assert max(len(batch) for batch in batches) == services.EVENTS_PER_MESSAGE


def test_a_lone_event_still_goes_out_at_once(api_client, relay_source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET}
        )
    started = time.monotonic()
    services.background_publisher.join()
    assert time.monotonic() - started < 0.5  # one linger (20 ms), not a sweep interval
    assert published_event_batches() == [[response.json()["id"]]]


def test_batch_task_processes_each_event_once_even_when_redelivered(relay_source):
    event_ids = received_events(5, relay_source)
    missing_id = max(event_ids) + 1000  # e.g. an event deleted by an operator: skipped, not fatal

    tasks.process_webhook_events.apply(args=[[*event_ids, missing_id]]).get()
    tasks.process_webhook_events.apply(args=[event_ids]).get()  # the broker delivered it twice

    assert WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookEvent.Status.PROCESSED).count() == 5
    assert Lead.objects.filter(external_lead_id__startswith="batch-").count() == 5


def test_sweeper_publishes_a_backlog_in_batches(relay_source):
    event_ids = received_events(120, relay_source)
    published_event_batches()  # the on-commit publishes of receipt, as if the broker had lost them

    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 120
    batches = published_event_batches()
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert sorted(event_id for batch in batches for event_id in batch) == sorted(event_ids)


def test_flush_at_shutdown_publishes_what_is_still_queued(relay_source):
    event_ids = received_events(3, relay_source)
    for event_id in event_ids:
        services.enqueue_event_processing(event_id=event_id, wait=False)

    assert services.background_publisher.flush(timeout_seconds=5) is True  # within one linger
    assert [event_id for batch in published_event_batches() for event_id in batch] == event_ids


def _lead_with_crm_delivery(relay_source, crm_destination, capture_on_commit, *, priority: str) -> int:
    rule = RoutingRule.objects.create(name=f"All {priority}", position=1, priority=priority)
    rule.destinations.add(crm_destination)
    services.routing_rules_invalidate()
    [event_id] = received_events(1, relay_source)
    take_published_tasks()  # the processing message; the delivery is published once processing commits
    with capture_on_commit(execute=True):
        lead = services.webhook_event_process(event_id=event_id)
    return lead.deliveries.get().pk


@pytest.mark.parametrize(("priority", "published_priority"), [("urgent", 0), ("high", 0), ("normal", 3), ("low", 3)])
def test_deliveries_of_urgent_and_high_leads_jump_the_queue(
    relay_source, crm_destination, settings, django_capture_on_commit_callbacks, priority, published_priority
):
    delivery_id = _lead_with_crm_delivery(
        relay_source, crm_destination, django_capture_on_commit_callbacks, priority=priority
    )

    [delivery] = [task for task in take_published_tasks() if task.name == tasks.deliver_lead.name]
    assert delivery.args == [delivery_id]
    assert delivery.priority == published_priority
    assert settings.LEAD_TASK_PRIORITY == 0 and settings.CELERY_TASK_DEFAULT_PRIORITY == 3


def test_lead_processing_is_published_ahead_of_other_work(relay_source):
    event_ids = received_events(2, relay_source)
    take_published_tasks()
    services.enqueue_events_processing(event_ids=event_ids)
    tasks.sweep_webhook_backlog.delay()  # any other task: the default priority

    published = {task.name: task.priority for task in take_published_tasks()}
    assert published == {tasks.process_webhook_events.name: 0, tasks.sweep_webhook_backlog.name: 3}


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")
def test_redis_hands_out_the_urgent_message_first(settings):
    """The priorities only mean something if the broker honours them: real Redis, a queue of its own."""
    queue_name = f"test-priority-{uuid.uuid4().hex[:8]}"
    switch_broker(settings, os.environ["REDIS_URL"])
    celery_app.conf.task_default_queue = queue_name
    try:
        services.enqueue_delivery(delivery_id=1, lead_priority="normal")
        services.enqueue_delivery(delivery_id=2, lead_priority="low")
        services.enqueue_delivery(delivery_id=3, lead_priority="urgent")
        with celery_app.connection_for_read() as conn:
            queue = SimpleQueue(conn, queue_name)
            order = []
            for _ in range(3):
                message = queue.get(timeout=5)
                order.append(message.decode()[0][0])
                message.ack()
            queue.queue.delete()
            queue.close()
    finally:
        celery_app.conf.task_default_queue = "celery"
    assert order == [3, 1, 2]  # the urgent lead first, then the others in the order they came
