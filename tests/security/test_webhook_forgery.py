"""Forged, tampered and replayed-late webhooks are refused with a 4xx and leave no row behind."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest

from tests.webhooks.conftest import GOOGLE_KEY, RELAY_SECRET, flat_payload, google_payload, post_json
from webhooks.models import Lead, WebhookEvent
from webhooks.services import SIGNATURE_TOLERANCE_SECONDS, standard_webhook_signature

RELAY_URL = "/api/v1/webhooks/zapier"
GOOGLE_URL = "/api/v1/webhooks/google-lead-form"
SIGNING_SECRET = "whsec_" + base64.b64encode(b"reliability-signing-key-32-bytes").decode()

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_relay_source(relay_source):
    """The relay source with a Standard Webhooks secret, so senders may sign instead of sharing it."""
    relay_source.secret = SIGNING_SECRET
    relay_source.save()
    from webhooks import services

    services.webhook_sources_invalidate()
    return relay_source


def signed_headers(body: bytes, *, secret: str = SIGNING_SECRET, msg_id: str = "msg_1", at: int | None = None):
    timestamp = int(time.time()) if at is None else at
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhook_signature(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def assert_refused_and_nothing_stored(response, status: int = 401) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"]
    assert WebhookEvent.objects.count() == 0
    assert Lead.objects.count() == 0


def _flip_one_byte(body: bytes) -> bytes:
    return body.replace(b"Ada", b"Eve", 1)


TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "one field changed": _flip_one_byte,
    "field added": lambda body: body[:-1] + b', "priority": "vip"}',
    "whitespace added": lambda body: body + b" ",
    "body truncated": lambda body: body[:-5],
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_signed_body_is_refused(api_client, signing_relay_source, tamper):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body)
    response = post_json(api_client, RELAY_URL, None, raw=tamper(body), **headers)
    # A truncated body is not JSON either; both answers are refusals and store nothing.
    assert_refused_and_nothing_stored(response, status=response.status_code)
    assert response.status_code in (400, 401)


def test_untampered_signed_body_is_accepted(api_client, signing_relay_source):
    """The control for the tampering cases: the same signing code accepts the original bytes."""
    body = json.dumps(flat_payload()).encode()
    response = post_json(api_client, RELAY_URL, None, raw=body, **signed_headers(body))
    assert response.status_code == 202
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Webhook-Secret": "wrong-secret"},
        {"X-Webhook-Secret": RELAY_SECRET[:-1]},
        {"X-Webhook-Secret": RELAY_SECRET + "x"},
        {"X-Webhook-Secret": RELAY_SECRET.upper()},
        {"X-Webhook-Secret": ""},
        {},
    ],
    ids=["wrong", "prefix", "suffix", "case-changed", "empty", "missing"],
)
def test_wrong_shared_secret_is_refused(api_client, relay_source, headers):
    response = post_json(api_client, RELAY_URL, flat_payload(), **headers)
    assert_refused_and_nothing_stored(response)


def test_signature_made_with_another_secret_is_refused(api_client, signing_relay_source):
    body = json.dumps(flat_payload()).encode()
    forged = signed_headers(body, secret="whsec_" + base64.b64encode(b"an-attacker-guessed-this-key!!!!").decode())
    assert_refused_and_nothing_stored(post_json(api_client, RELAY_URL, None, raw=body, **forged))


def test_signature_of_another_message_id_is_refused(api_client, signing_relay_source):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, msg_id="msg_original")
    headers["webhook-id"] = "msg_replayed"
    assert_refused_and_nothing_stored(post_json(api_client, RELAY_URL, None, raw=body, **headers))


@pytest.mark.parametrize(
    "offset",
    [-(SIGNATURE_TOLERANCE_SECONDS + 1), SIGNATURE_TOLERANCE_SECONDS + 1, -86_400],
    ids=["just-too-old", "from-the-future", "a-day-old"],
)
def test_stale_or_future_timestamp_is_refused_even_when_correctly_signed(api_client, signing_relay_source, offset):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, at=int(time.time()) + offset)
    assert_refused_and_nothing_stored(post_json(api_client, RELAY_URL, None, raw=body, **headers))


@pytest.mark.parametrize("timestamp", ["", "yesterday", "1.5e9", "-1"], ids=["empty", "word", "float", "negative"])
def test_unreadable_timestamp_is_refused(api_client, signing_relay_source, timestamp):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body)
    headers["webhook-timestamp"] = timestamp
    assert_refused_and_nothing_stored(post_json(api_client, RELAY_URL, None, raw=body, **headers))


def test_a_bad_signature_is_not_rescued_by_a_good_shared_secret_header(api_client, signing_relay_source):
    """A sender that signs must sign right: the header secret is no fallback for a failed signature."""
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(_flip_one_byte(body))
    headers["X-Webhook-Secret"] = SIGNING_SECRET
    assert_refused_and_nothing_stored(post_json(api_client, RELAY_URL, None, raw=body, **headers))


@pytest.mark.parametrize(
    "google_key",
    ["wrong-key", GOOGLE_KEY[:-1], "", None, 12345, [GOOGLE_KEY], {"key": GOOGLE_KEY}],
    ids=["wrong", "prefix", "empty", "null", "number", "list", "object"],
)
def test_google_lead_form_with_a_wrong_key_is_refused(api_client, google_source, google_key):
    response = post_json(api_client, GOOGLE_URL, google_payload(google_key=google_key))
    assert_refused_and_nothing_stored(response)


def test_google_lead_form_without_a_key_is_refused(api_client, google_source):
    payload = google_payload()
    del payload["google_key"]
    assert_refused_and_nothing_stored(post_json(api_client, GOOGLE_URL, payload))


def test_relay_secret_does_not_open_the_google_receiver(api_client, relay_source, google_source):
    """Each receiver accepts only its own kind of source's secret."""
    response = post_json(api_client, GOOGLE_URL, google_payload(google_key=RELAY_SECRET))
    assert_refused_and_nothing_stored(response)


def test_refusals_do_not_echo_the_secret_that_was_sent(api_client, relay_source):
    attempt = "attempted-secret-" + "x" * 20
    response = post_json(api_client, RELAY_URL, flat_payload(), **{"X-Webhook-Secret": attempt})
    assert response.status_code == 401
    assert attempt not in response.content.decode()
    assert RELAY_SECRET not in response.content.decode()
