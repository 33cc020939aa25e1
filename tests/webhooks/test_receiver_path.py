"""Receivers take the short middleware path: the platform's own guards, none of the browser's."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.utils import timezone

from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json
from webhooks import services
from webhooks.models import WebhookEvent

ZAPIER = "/api/v1/webhooks/zapier"


def test_a_receipt_keeps_request_id_and_security_headers_but_no_browser_middleware(api_client, relay_source):
    response = post_json(
        api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET, "X-Request-ID": "make-run-42"}
    )

    assert response.status_code == 202
    assert response["X-Request-ID"] == "make-run-42"  # request id middleware ran
    assert response["X-Content-Type-Options"] == "nosniff"  # security middleware ran
    assert response.wsgi_request.resolver_match.url_name == "webhook-zapier"
    # Session, CSRF, messages and clickjacking middleware did not: nothing of them is on the answer.
    assert "X-Frame-Options" not in response
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "session")
    assert WebhookEvent.objects.filter(pk=response.json()["id"]).exists()


def test_errors_on_the_short_path_keep_the_error_shape(api_client, relay_source):
    unauthorized = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": "wrong"})
    not_allowed = api_client.get(ZAPIER)

    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    assert not_allowed.status_code == 405
    assert not_allowed.json()["error"]["code"] == "method_not_allowed"


def test_other_paths_take_the_whole_chain(api_client, relay_source):
    response = post_json(api_client, ZAPIER + "/", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})

    assert response.status_code == 404  # resolved by urls.py as before, not by the short path
    assert response["X-Frame-Options"] == "DENY"
    assert WebhookEvent.objects.count() == 0


def _stored_columns(event: WebhookEvent) -> dict:
    row = {field.attname: getattr(event, field.attname) for field in WebhookEvent._meta.concrete_fields}
    return {name: value for name, value in row.items() if name not in ("id", "dedupe_key", "received_at")}


def test_the_receivers_insert_writes_the_row_the_model_would(relay_source):
    """The receiver's INSERT is written once by hand (services.receiving): every column it leaves
    to the database must come out as the model's own defaults would have it."""
    headers = {"content-type": "application/json", "user-agent": "Make/production", "x-webhook-secret": "never kept"}
    payload = flat_payload(lead_id="same-row")
    received = services.webhook_event_ingest(
        source=relay_source, raw_body=json.dumps(payload).encode(), headers=headers, payload=payload
    )
    by_the_model = WebhookEvent.objects.create(
        source=relay_source,
        dedupe_key="by-the-model",
        raw_body=json.dumps(payload),
        content_type="application/json",
        headers={"content-type": "application/json", "user-agent": "Make/production"},
        received_at=timezone.now(),
    )

    stored = WebhookEvent.objects.get(pk=received.event_id)
    assert received.created
    assert stored.dedupe_key == "lead:same-row"
    assert _stored_columns(stored) == _stored_columns(WebhookEvent.objects.get(pk=by_the_model.pk))


def test_a_repeat_inside_a_transaction_answers_the_first_id_and_leaves_the_transaction_usable(relay_source):
    payload = flat_payload(lead_id="twice")
    body = json.dumps(payload).encode()
    with transaction.atomic():
        first = services.webhook_event_ingest(source=relay_source, raw_body=body, headers={}, payload=payload)
        again = services.webhook_event_ingest(source=relay_source, raw_body=body, headers={}, payload=payload)
        assert WebhookEvent.objects.filter(source=relay_source).count() == 1  # no aborted transaction

    assert (first.created, again.created) == (True, False)
    assert again.event_id == first.event_id


def test_the_receivers_insert_is_planned_once_per_connection(api_client, relay_source):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for index in range(3):
        response = post_json(
            api_client, ZAPIER, flat_payload(lead_id=f"planned-{index}"), **{"X-Webhook-Secret": RELAY_SECRET}
        )
        assert response.status_code == 202
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"INSERT INTO {WebhookEvent._meta.db_table} %"],
        )
        assert cursor.fetchone()[0] == 1
