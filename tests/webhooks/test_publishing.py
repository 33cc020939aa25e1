"""Event ids reach the broker in batches: one Celery message for what arrives together, each id once."""

from __future__ import annotations

import json
import time

import pytest
from kombu.simple import SimpleQueue

from adsplatform.celery import app as celery_app
from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json
from webhooks import services, tasks
from webhooks.models import Lead, WebhookEvent


def published_event_batches() -> list[list[int]]:
    """The event ids of each processing message waiting in the (in-memory) broker, taken off it."""
    batches = []
    with celery_app.connection_for_read() as conn:
        queue = SimpleQueue(conn, celery_app.conf.task_default_queue)
        while True:
            try:
                message = queue.get(block=False)
            except SimpleQueue.Empty:
                break
            if message.headers["task"] == tasks.process_webhook_events.name:
                args, _kwargs, _embed = message.decode()
                batches.append(list(args[0]))
            message.ack()
        queue.close()
    return batches


def received_events(count: int, source) -> list[int]:
    event_ids = []
    for index in range(count):
        payload = flat_payload(lead_id=f"batch-{index}")
        result = services.webhook_event_ingest(
            source=source, raw_body=json.dumps(payload).encode(), headers={}, payload=payload
        )
        event_ids.append(result.event_id)
    return event_ids


@pytest.fixture
def drained_broker():
    services.background_publisher.join()
    published_event_batches()  # whatever earlier tests of this process left


def test_events_arriving_together_leave_in_few_messages_each_id_once(relay_source, drained_broker):
    event_ids = received_events(120, relay_source)
    for event_id in event_ids:
        assert services.enqueue_event_processing(event_id=event_id, wait=False)
    services.background_publisher.join()

    batches = published_event_batches()
    published = [event_id for batch in batches for event_id in batch]
    assert sorted(published) == sorted(event_ids)  # none lost, none twice
    assert len(batches) == 3  # 50 + 50 + 20: submitted within one linger, split at the cap
    assert max(len(batch) for batch in batches) == services.EVENTS_PER_MESSAGE


def test_a_lone_event_still_goes_out_at_once(
    api_client, relay_source, drained_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET}
        )
    started = time.monotonic()
    services.background_publisher.join()
    assert time.monotonic() - started < 0.5  # one linger (20 ms), not a sweep interval
    assert published_event_batches() == [[response.json()["id"]]]


def test_batch_task_processes_each_event_once_even_when_redelivered(relay_source, drained_broker):
    event_ids = received_events(5, relay_source)
    missing_id = max(event_ids) + 1000  # e.g. an event deleted by an operator: skipped, not fatal

    tasks.process_webhook_events.apply(args=[[*event_ids, missing_id]]).get()
    tasks.process_webhook_events.apply(args=[event_ids]).get()  # the broker delivered it twice

    assert WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookEvent.Status.PROCESSED).count() == 5
    assert Lead.objects.filter(external_lead_id__startswith="batch-").count() == 5


def test_sweeper_publishes_a_backlog_in_batches(relay_source, drained_broker):
    event_ids = received_events(120, relay_source)
    published_event_batches()  # the on-commit publishes of receipt, as if the broker had lost them

    assert services.webhook_backlog_sweep(older_than_seconds=0).events == 120
    batches = published_event_batches()
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert sorted(event_id for batch in batches for event_id in batch) == sorted(event_ids)


def test_flush_at_shutdown_publishes_what_is_still_queued(relay_source, drained_broker):
    event_ids = received_events(3, relay_source)
    for event_id in event_ids:
        services.enqueue_event_processing(event_id=event_id, wait=False)

    assert services.background_publisher.flush(timeout_seconds=5) is True  # within one linger
    assert [event_id for batch in published_event_batches() for event_id in batch] == event_ids
