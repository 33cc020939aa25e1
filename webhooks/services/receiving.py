"""Receiving: store the event before the answer, then hand its id to the broker, never waiting on it."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from webhooks.metrics import WEBHOOK_EVENTS
from webhooks.models import (
    Priority,
    WebhookEvent,
    WebhookSource,
)
from webhooks.services.common import STORED_HEADERS, setting

logger = logging.getLogger(__name__)


# --- Receiving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    event_id: int
    created: bool


def unwrap_relayed(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Make.com scenarios sometimes wrap the Google body in one envelope key."""
    if "user_column_data" not in payload:
        for key in ("data", "body", "lead", "payload"):
            inner = payload.get(key)
            if isinstance(inner, dict) and "user_column_data" in inner:
                return inner
    return payload


def webhook_event_dedupe_key(*, payload: Mapping[str, Any], headers: Mapping[str, str], raw_body: bytes) -> str:
    """The same lead (its lead_id), else the same message (webhook-id), else the same bytes."""
    lead_id = unwrap_relayed(payload).get("lead_id")
    if isinstance(lead_id, (str, int)) and str(lead_id).strip():
        key = f"lead:{str(lead_id).strip()}"
    elif headers.get("webhook-id"):
        key = f"msg:{headers['webhook-id']}"
    else:
        return f"sha256:{hashlib.sha256(raw_body).hexdigest()}"
    return key if len(key) <= 255 else f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def webhook_event_ingest(
    *, source: WebhookSource, raw_body: bytes, headers: Mapping[str, str], payload: Mapping[str, Any]
) -> IngestResult:
    """Store the event (or find its first copy) and enqueue processing once it is committed."""
    dedupe_key = webhook_event_dedupe_key(payload=payload, headers=headers, raw_body=raw_body)
    stored_headers = {name: headers[name][:500] for name in STORED_HEADERS if headers.get(name)}
    fields = {
        "source": source,
        "dedupe_key": dedupe_key,
        "raw_body": raw_body.decode("utf-8"),
        "headers": stored_headers,
        "received_at": timezone.now(),
    }
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a duplicate must not break the caller's transaction
                event = WebhookEvent.objects.create(**fields)
        else:
            # Autocommit: one round trip, and the row is committed when create() returns.
            event = WebhookEvent.objects.create(**fields)
    except IntegrityError:
        first = WebhookEvent.objects.filter(source=source, dedupe_key=dedupe_key).values_list("pk", flat=True).first()
        if first is None:  # the constraint fired for another reason: a bug, so let it surface
            raise
        WEBHOOK_EVENTS.labels(source.name, "duplicate").inc()
        return IngestResult(event_id=first, created=False)
    # After commit (at once in autocommit), so a worker never looks for a row it cannot see yet.
    transaction.on_commit(lambda: enqueue_event_processing(event_id=event.pk, wait=False))
    WEBHOOK_EVENTS.labels(source.name, "accepted").inc()
    return IngestResult(event_id=event.pk, created=True)


def webhook_event_record_refusal(*, source_label: str, outcome: str) -> None:
    """Count a refused request (unauthorized / invalid); nothing else is kept of it."""
    WEBHOOK_EVENTS.labels(source_label, outcome).inc()


# --- Enqueueing, never blocking on the broker ------------------------------------------------


class _BrokerCircuit:
    """After a publish fails, skip publishing for a while: the sweeper enqueues from the database.

    Without it every message during a broker outage would pay the connection timeout (~2 s).
    """

    pause_seconds = 30.0

    def __init__(self) -> None:
        self._open_until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.pause_seconds

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


broker_circuit = _BrokerCircuit()


def _publish(task: Any, *args: Any, countdown: float | None = None, first: bool = False) -> bool:
    """Publish without waiting on a broker that is down; ``first``: ahead of the default priority."""
    if broker_circuit.is_open():
        return False
    # Only when asked: an explicit priority=None would not fall back to the default, but to the top.
    options = {"priority": setting("LEAD_TASK_PRIORITY", 0)} if first else {}
    try:
        task.apply_async(args=args, countdown=countdown, retry=False, **options)
    except Exception as exc:  # any broker failure: the row is committed and the sweeper will retry
        broker_circuit.trip()
        logger.warning(
            "broker unavailable; left for the sweeper",
            extra={"task": task.name, "error_class": type(exc).__name__},
        )
        return False
    return True


# Events per processing message: the cap keeps one message's work short enough that several
# workers share a burst.
EVENTS_PER_MESSAGE = 50
# How long the publisher waits for more ids to join the first one. Without it batches would form
# only when events arrive faster than one publish takes (~1 ms), i.e. almost never, while each
# lone publish costs a web process as much CPU as the rest of its request. 20 ms more before a
# worker picks a lead up is nothing next to the seconds a person takes to answer it.
PUBLISH_LINGER_SECONDS = 0.02


class _BackgroundPublisher:
    """Publishes event ids from a daemon thread, so a web request never waits on the broker.

    Even a refused connection costs the Redis client about two seconds; the request has
    already committed its row, so handing the id to a thread loses nothing: an id dropped
    (queue full, process killed, broker down) is found by the sweeper. Ids that arrive within
    ``PUBLISH_LINGER_SECONDS`` of each other leave together in one message: a Celery publish
    costs ~0.8 ms of CPU, more than the rest of a webhook request, so one message per event
    would halve what a web process can accept.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue[int] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, event_id: int) -> bool:
        self._ensure_thread()
        try:
            self._queue.put_nowait(event_id)
        except queue.Full:
            logger.warning("publish queue full; left for the sweeper", extra={"event_id": event_id})
            return False
        return True

    def join(self) -> None:
        """Wait until everything submitted so far was published or dropped (tests)."""
        self._queue.join()

    def flush(self, timeout_seconds: float) -> bool:
        """At shutdown: give the ids still queued up to ``timeout_seconds`` to go out; True if they did.

        Whatever is left is not lost (its rows are committed), only late: the sweeper finds it.
        """
        deadline = time.monotonic() + timeout_seconds
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _ensure_thread(self) -> None:
        # A forked child (gunicorn worker, Celery prefork) inherits no running thread.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-publisher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        from webhooks import tasks  # tasks import services

        while True:
            batch = [self._queue.get()]
            if self._queue.qsize() < EVENTS_PER_MESSAGE - 1:
                # Sleep rather than wait on the queue: a wait would wake this thread (and take the
                # GIL from a request) once for every id that joins.
                time.sleep(PUBLISH_LINGER_SECONDS)
            while len(batch) < EVENTS_PER_MESSAGE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                _publish(tasks.process_webhook_events, batch, first=True)
            finally:
                for _ in batch:
                    self._queue.task_done()


background_publisher = _BackgroundPublisher()


def enqueue_event_processing(*, event_id: int, wait: bool = True) -> bool:
    """Publish the processing of one event; ``wait=False`` (the request path) hands it to a thread."""
    if not wait:
        return background_publisher.submit(event_id)
    return enqueue_events_processing(event_ids=[event_id]) == 1


def enqueue_events_processing(*, event_ids: list[int]) -> int:
    """Publish the processing of many events, ``EVENTS_PER_MESSAGE`` to a message; how many went."""
    from webhooks import tasks

    published = 0
    for start in range(0, len(event_ids), EVENTS_PER_MESSAGE):
        chunk = event_ids[start : start + EVENTS_PER_MESSAGE]
        if not _publish(tasks.process_webhook_events, chunk, first=True):
            break  # the broker is down: the sweeper will find the rest
        published += len(chunk)
    return published


# Leads whose deliveries jump the queue: "urgent and high go out at once".
FIRST_PRIORITIES = frozenset({Priority.URGENT, Priority.HIGH})


def enqueue_delivery(*, delivery_id: int, lead_priority: str, countdown: float | None = None) -> bool:
    from webhooks import tasks

    return _publish(tasks.deliver_lead, delivery_id, countdown=countdown, first=lead_priority in FIRST_PRIORITIES)
