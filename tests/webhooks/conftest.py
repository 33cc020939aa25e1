"""Webhook fixtures: sources with known secrets, a broker we control, a CRM on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kombu.pools
import pytest
from kombu.simple import SimpleQueue

from adsplatform.celery import app as celery_app
from webhooks import services
from webhooks.models import Destination, WebhookSource

RELAY_SECRET = "relay-secret-current-0123456789"
RELAY_PREVIOUS_SECRET = "relay-secret-previous-9876543210"
GOOGLE_KEY = "google-form-key-abcdef"
CRM_SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def switch_broker(settings, url: str) -> None:
    """Point both the setting and the live Celery app at ``url`` (the app caches its pool)."""
    settings.CELERY_BROKER_URL = url
    celery_app.conf.broker_url = url
    # Close and forget kombu's shared pools too: a closed pool left registered under the
    # old URL would fail the next test that publishes to it ("Acquire on closed pool").
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    services.broker_circuit.reset()


@dataclass(frozen=True)
class PublishedTask:
    name: str
    args: list
    priority: int | None


def take_published_tasks() -> list[PublishedTask]:
    """Every task message waiting in the in-memory broker, in the order published; taken off it."""
    services.background_publisher.join()
    taken = []
    with celery_app.connection_for_read() as conn:
        queue = SimpleQueue(conn, celery_app.conf.task_default_queue)
        while True:
            try:
                message = queue.get(block=False)
            except SimpleQueue.Empty:
                break
            args, _kwargs, _embed = message.decode()
            taken.append(PublishedTask(message.headers["task"], list(args), message.properties.get("priority")))
            message.ack()
        queue.close()
    return taken


@pytest.fixture(autouse=True)
def memory_broker(settings) -> Iterator[None]:
    """Publish to Kombu's in-memory transport, so no test writes into a real queue."""
    original = celery_app.conf.broker_url
    switch_broker(settings, "memory://")
    take_published_tasks()  # the in-memory queues outlive a connection: start each test empty
    yield
    services.background_publisher.join()
    switch_broker(settings, original)


@pytest.fixture(autouse=True)
def _fresh_memory_caches() -> None:
    """Rules and sources live in process memory between tests; make each test load its own."""
    services.routing_rules_invalidate()
    services.webhook_sources_invalidate()


@pytest.fixture
def relay_source(db) -> WebhookSource:
    """The Make.com/Zapier source, as seeded from WEBHOOK_SECRET."""
    return WebhookSource.objects.create(name="zapier", kind=WebhookSource.Kind.RELAY, secret=RELAY_SECRET)


@pytest.fixture
def google_source(db) -> WebhookSource:
    """The Google Ads lead form source, as seeded from GOOGLE_LEAD_FORM_KEY."""
    return WebhookSource.objects.create(
        name="google-lead-form", kind=WebhookSource.Kind.GOOGLE_LEAD_FORM, secret=GOOGLE_KEY
    )


def google_payload(**overrides: Any) -> dict[str, Any]:
    """Google's documented lead form body, with a field Google may add later."""
    body = {
        "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
            {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
            {"column_name": "User Email", "string_value": "Test@Example.com", "column_id": "EMAIL"},
            {"column_name": "Postal Code", "string_value": "94043", "column_id": "POSTAL_CODE"},
            {"column_name": "What is your budget?", "string_value": "7500", "column_id": "budget"},
        ],
        "api_version": "1.0",
        "form_id": 40000000000,
        "campaign_id": 50000000000,
        "google_key": GOOGLE_KEY,
        "is_test": True,
        "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-gclid",
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
        "asset_group_id": 9223372036854775807,
        "lead_stage": "SUBMITTED",
        "lead_submit_time": "2026-01-15T10:20:30.123456Z",
        "a_field_google_adds_next_year": {"nested": [1, 2, 3]},
    }
    body.update(overrides)
    return body


def flat_payload(**overrides: Any) -> dict[str, Any]:
    """What a Make.com scenario maps a lead to: flat fields plus custom answers."""
    body = {
        "lead_id": "make-0001",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "phone": "(650) 555-0199",
        "campaign_id": "50000000000",
        "form_id": "40000000000",
        "gclid": "EAIaIQobChMI-flat",
        "budget": "12000",
        "preferred_time": "morning",
    }
    body.update(overrides)
    return body


def post_json(client, path: str, payload: Any, *, raw: bytes | None = None, **headers: str):
    body = raw if raw is not None else json.dumps(payload).encode()
    return client.generic(
        "POST", path, body, content_type=headers.pop("content_type", "application/json"), headers=headers
    )


@dataclass
class CrmReceiver:
    """A real HTTP server on an ephemeral loopback port that answers a scripted list of codes."""

    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_seconds: float = 0.0
    url: str = ""


@pytest.fixture
def crm_receiver() -> Iterator[CrmReceiver]:
    """Answers the codes in ``script`` in turn, then 200; records every request it got (path, headers, body)."""
    receiver = CrmReceiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                code = receiver.script.pop(0) if receiver.script else 200
            if receiver.delay_seconds:
                time.sleep(receiver.delay_seconds)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/leads"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def crm_destination(db, crm_receiver) -> Destination:
    """The CRM endpoint, signing each POST with a Standard Webhooks secret."""
    return Destination.objects.create(
        name="CRM", kind=Destination.Kind.CRM, url=crm_receiver.url, signing_secret=CRM_SIGNING_SECRET
    )


@pytest.fixture
def email_destination(db) -> Destination:
    """The sales desk's mailbox."""
    return Destination.objects.create(
        name="Sales desk", kind=Destination.Kind.EMAIL, recipients="sales@example.com, oncall@example.com"
    )
