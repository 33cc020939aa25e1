"""The two receivers: who gets in, what is stored, and what the sender is told."""

from __future__ import annotations

import json
import time

import pytest
from django.test import override_settings

from tests.webhooks.conftest import (
    GOOGLE_KEY,
    RELAY_PREVIOUS_SECRET,
    RELAY_SECRET,
    flat_payload,
    google_payload,
    post_json,
)
from webhooks import services
from webhooks.models import Lead, WebhookEvent, WebhookSource
from webhooks.services import sources

ZAPIER = "/api/v1/webhooks/zapier"
GOOGLE = "/api/v1/webhooks/google-lead-form"


def signed_headers(body: bytes, secret: str, *, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at: int | None = None):
    timestamp = int(time.time()) if at is None else at
    signature = services.standard_webhook_signature(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# --- Google's own webhook ---------------------------------------------------------------


def test_google_documented_payload_is_stored_then_becomes_a_test_lead(api_client, google_source):
    response = post_json(api_client, GOOGLE, google_payload())

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert event.source == google_source
    assert event.status == WebhookEvent.Status.RECEIVED
    assert json.loads(event.raw_body)["lead_id"].startswith("TeSter-123")

    lead = services.webhook_event_process(event_id=event.pk)

    assert lead.is_test is True
    assert lead.full_name == "FirstName LastName"
    assert lead.email == "test@example.com"
    assert lead.phone == "+16505550123"
    assert lead.gclid == "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-gclid"
    assert (lead.form_id, lead.campaign_external_id, lead.adgroup_id, lead.creative_id) == (
        40000000000,
        50000000000,
        20000000000,
        30000000000,
    )
    assert lead.asset_group_id == 2**63 - 1  # the 64-bit edge survives
    assert lead.custom_answers == {"POSTAL_CODE": "94043", "budget": "7500"}  # unknown envelope fields ignored
    assert lead.submitted_at.isoformat() == "2026-01-15T10:20:30.123456+00:00"
    assert "google_key" not in json.dumps(lead.custom_answers)


def test_google_ids_sent_as_strings_parse_as_integers(api_client, google_source):
    payload = google_payload(form_id="40000000001", campaign_id="50000000001", lead_id="string-ids")
    response = post_json(api_client, GOOGLE, payload)
    lead = services.webhook_event_process(event_id=response.json()["id"])
    assert (lead.form_id, lead.campaign_external_id) == (40000000001, 50000000001)


def test_google_repeat_of_a_lead_is_a_duplicate_with_the_first_id(api_client, google_source):
    first = post_json(api_client, GOOGLE, google_payload())
    again = post_json(api_client, GOOGLE, google_payload(is_test=False))

    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize("key", ["wrong-key", "", None])
def test_google_wrong_or_missing_key_is_401_and_nothing_is_stored(api_client, google_source, key):
    payload = google_payload(google_key=key)
    if key is None:
        payload.pop("google_key")
    error = assert_error(post_json(api_client, GOOGLE, payload), 401, "unauthorized")
    assert GOOGLE_KEY not in json.dumps(error)
    assert WebhookEvent.objects.count() == 0


def test_google_keys_set_in_admin_are_accepted_too(api_client, google_source):
    WebhookSource.objects.create(name="second-form", kind=WebhookSource.Kind.GOOGLE_LEAD_FORM, secret="other-key")
    response = post_json(api_client, GOOGLE, google_payload(google_key="other-key"))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().source.name == "second-form"


def test_a_relay_secret_does_not_open_the_google_receiver(api_client, relay_source, google_source):
    assert_error(post_json(api_client, GOOGLE, google_payload(google_key=RELAY_SECRET)), 401, "unauthorized")


# --- The Make.com / Zapier relay ---------------------------------------------------------


def test_flat_make_payload_with_shared_secret_is_accepted_and_normalized(api_client, relay_source):
    response = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    lead = services.webhook_event_process(event_id=response.json()["id"])
    assert lead.full_name == "Ada Lovelace"
    assert lead.phone == "+16505550199"
    assert lead.phone_raw == "(650) 555-0199"
    assert lead.campaign_external_id == 50000000000
    assert lead.gclid == "EAIaIQobChMI-flat"
    assert lead.custom_answers == {"budget": "12000", "preferred_time": "morning"}
    assert lead.is_test is False


def test_relayed_google_body_through_make_is_accepted(api_client, relay_source):
    relayed = google_payload(lead_id="relayed-1", is_test=False)
    relayed.pop("google_key")  # Make.com does not forward the key
    response = post_json(api_client, ZAPIER, relayed, **{"X-Webhook-Secret": RELAY_SECRET})

    assert response.status_code == 202
    lead = services.webhook_event_process(event_id=response.json()["id"])
    assert (lead.external_lead_id, lead.full_name, lead.phone) == ("relayed-1", "FirstName LastName", "+16505550123")
    assert lead.custom_answers["budget"] == "7500"


def test_relayed_google_body_wrapped_in_an_envelope_is_unwrapped(api_client, relay_source):
    inner = google_payload(lead_id="wrapped-1")
    response = post_json(api_client, ZAPIER, {"data": inner}, **{"X-Webhook-Secret": RELAY_SECRET})
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert event.dedupe_key == "lead:wrapped-1"
    assert services.webhook_event_process(event_id=event.pk).external_lead_id == "wrapped-1"


def test_same_google_lead_direct_and_relayed_is_one_lead(api_client, relay_source, google_source):
    direct = post_json(api_client, GOOGLE, google_payload(lead_id="both-ways"))
    relayed = post_json(api_client, ZAPIER, google_payload(lead_id="both-ways"), **{"X-Webhook-Secret": RELAY_SECRET})
    first = services.webhook_event_process(event_id=direct.json()["id"])
    second = services.webhook_event_process(event_id=relayed.json()["id"])
    assert first.pk == second.pk
    assert Lead.objects.count() == 1


def test_flat_duplicate_by_lead_id(api_client, relay_source):
    first = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    again = post_json(api_client, ZAPIER, flat_payload(budget="1"), **{"X-Webhook-Secret": RELAY_SECRET})
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}


def test_flat_without_lead_id_dedupes_on_the_body_hash(api_client, relay_source):
    payload = flat_payload()
    payload.pop("lead_id")
    first = post_json(api_client, ZAPIER, payload, **{"X-Webhook-Secret": RELAY_SECRET})
    same = post_json(api_client, ZAPIER, payload, **{"X-Webhook-Secret": RELAY_SECRET})
    other = post_json(api_client, ZAPIER, {**payload, "email": "b@example.org"}, **{"X-Webhook-Secret": RELAY_SECRET})
    assert (first.status_code, same.status_code, other.status_code) == (202, 200, 202)
    assert same.json()["id"] == first.json()["id"]
    assert WebhookEvent.objects.get(pk=first.json()["id"]).dedupe_key.startswith("sha256:")


def test_duplicates_are_per_source(api_client, relay_source):
    WebhookSource.objects.create(name="zapier-2", kind=WebhookSource.Kind.RELAY, secret="second-relay-secret")
    a = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    b = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": "second-relay-secret"})
    assert (a.status_code, b.status_code) == (202, 202)


def test_stored_headers_never_include_the_shared_secret(api_client, relay_source):
    response = post_json(
        api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET, "User-Agent": "Make/1.0"}
    )
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert event.headers["user-agent"] == "Make/1.0"
    assert RELAY_SECRET not in json.dumps(event.headers)


def test_wrong_secret_is_401_and_nothing_is_stored(api_client, relay_source):
    assert_error(post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": "nope"}), 401, "unauthorized")
    assert_error(post_json(api_client, ZAPIER, flat_payload()), 401, "unauthorized")
    assert WebhookEvent.objects.count() == 0


def test_inactive_source_is_refused(api_client, relay_source):
    relay_source.is_active = False
    relay_source.save()
    services.webhook_sources_invalidate()  # as the admin does on save
    assert_error(
        post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET}), 401, "unauthorized"
    )


def test_rotation_accepts_both_secrets_then_only_the_new_one(api_client, relay_source):
    relay_source.previous_secret = RELAY_PREVIOUS_SECRET
    relay_source.save()
    services.webhook_sources_invalidate()  # as the admin does on save
    new = post_json(api_client, ZAPIER, flat_payload(lead_id="r1"), **{"X-Webhook-Secret": RELAY_SECRET})
    old = post_json(api_client, ZAPIER, flat_payload(lead_id="r2"), **{"X-Webhook-Secret": RELAY_PREVIOUS_SECRET})
    assert (new.status_code, old.status_code) == (202, 202)

    relay_source.previous_secret = ""
    relay_source.save()
    services.webhook_sources_invalidate()  # as the admin does on save
    assert_error(
        post_json(api_client, ZAPIER, flat_payload(lead_id="r3"), **{"X-Webhook-Secret": RELAY_PREVIOUS_SECRET}),
        401,
        "unauthorized",
    )


# --- Standard Webhooks signatures ---------------------------------------------------------


def test_signed_request_is_accepted_and_dedupes_on_webhook_id_without_lead_id(api_client, relay_source):
    payload = flat_payload()
    payload.pop("lead_id")
    body = json.dumps(payload).encode()
    response = post_json(api_client, ZAPIER, None, raw=body, **signed_headers(body, RELAY_SECRET))
    assert response.status_code == 202
    assert WebhookEvent.objects.get().dedupe_key == "msg:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    # The sender's retry: same id, fresh timestamp and signature.
    retry = post_json(api_client, ZAPIER, None, raw=body, **signed_headers(body, RELAY_SECRET))
    assert retry.json() == {"status": "duplicate", "id": response.json()["id"]}


def test_whsec_secret_signs_with_its_decoded_bytes(api_client, db):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    WebhookSource.objects.create(name="signed", kind=WebhookSource.Kind.RELAY, secret=secret)
    body = b'{"email": "x@example.org", "lead_id": "w1"}'
    # The Standard Webhooks specification's own test vector for this secret.
    vector = services.standard_webhook_signature(
        secret=secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=b'{"test": 2432232314}'
    )
    assert vector == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    response = post_json(api_client, ZAPIER, None, raw=body, **signed_headers(body, secret))
    assert response.status_code == 202


def test_signature_with_several_keys_accepts_any_matching_one(api_client, relay_source):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, RELAY_SECRET)
    headers["webhook-signature"] = "v1,bm90LWEtc2lnbmF0dXJl " + headers["webhook-signature"]
    assert post_json(api_client, ZAPIER, None, raw=body, **headers).status_code == 202


def test_signature_from_the_previous_secret_is_accepted_during_rotation(api_client, relay_source):
    relay_source.previous_secret = RELAY_PREVIOUS_SECRET
    relay_source.save()
    services.webhook_sources_invalidate()  # as the admin does on save
    body = json.dumps(flat_payload()).encode()
    assert (
        post_json(api_client, ZAPIER, None, raw=body, **signed_headers(body, RELAY_PREVIOUS_SECRET)).status_code == 202
    )


@pytest.mark.parametrize("skew_seconds", [-301, 301, -3600])
def test_timestamp_outside_five_minutes_is_refused(api_client, relay_source, skew_seconds):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, RELAY_SECRET, at=int(time.time()) + skew_seconds)
    error = assert_error(post_json(api_client, ZAPIER, None, raw=body, **headers), 401, "unauthorized")
    assert "5 minutes" in error["message"]
    assert WebhookEvent.objects.count() == 0


def test_timestamp_inside_tolerance_is_accepted(api_client, relay_source):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, RELAY_SECRET, at=int(time.time()) - 290)
    assert post_json(api_client, ZAPIER, None, raw=body, **headers).status_code == 202


def test_tampered_body_or_wrong_secret_fails_the_signature(api_client, relay_source):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, RELAY_SECRET)
    tampered = body.replace(b"12000", b"99999")
    assert_error(post_json(api_client, ZAPIER, None, raw=tampered, **headers), 401, "unauthorized")
    assert_error(post_json(api_client, ZAPIER, None, raw=body, **signed_headers(body, "guess")), 401, "unauthorized")
    assert WebhookEvent.objects.count() == 0


def test_signature_without_id_or_timestamp_is_refused(api_client, relay_source):
    body = json.dumps(flat_payload()).encode()
    headers = signed_headers(body, RELAY_SECRET)
    headers.pop("webhook-timestamp")
    assert_error(post_json(api_client, ZAPIER, None, raw=body, **headers), 401, "unauthorized")


# --- Everything else that is not a lead ------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/octet-stream", ""])
def test_wrong_content_type_is_415(api_client, relay_source, google_source, content_type):
    response = post_json(
        api_client, ZAPIER, google_payload(), content_type=content_type, **{"X-Webhook-Secret": RELAY_SECRET}
    )
    error = assert_error(response, 415, "unsupported_media_type")
    for accepted in ("application/json", "application/x-www-form-urlencoded", "multipart/form-data"):
        assert accepted in error["message"]
    assert error["details"]["accepted"] == [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]

    error = assert_error(
        post_json(api_client, GOOGLE, google_payload(), content_type=content_type), 415, "unsupported_media_type"
    )
    assert "application/json" in error["message"]
    assert WebhookEvent.objects.count() == 0


def test_google_lead_form_takes_json_only(api_client, google_source):
    response = post_json(
        api_client,
        GOOGLE,
        None,
        raw=b"lead_id=1&google_key=" + GOOGLE_KEY.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    error = assert_error(response, 415, "unsupported_media_type")
    assert "multipart" not in error["message"]
    assert WebhookEvent.objects.count() == 0


def test_json_with_charset_parameter_is_fine(api_client, relay_source):
    response = post_json(
        api_client,
        ZAPIER,
        flat_payload(),
        content_type="application/json; charset=utf-8",
        **{"X-Webhook-Secret": RELAY_SECRET},
    )
    assert response.status_code == 202


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe{}", b'{"a": 1'])
def test_bad_json_is_400(api_client, relay_source, google_source, raw):
    assert_error(post_json(api_client, ZAPIER, None, raw=raw, **{"X-Webhook-Secret": RELAY_SECRET}), 400, "parse_error")
    assert_error(post_json(api_client, GOOGLE, None, raw=raw), 400, "parse_error")
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("payload", [[1, 2], "lead", 42, None])
def test_json_that_is_not_an_object_is_400(api_client, relay_source, payload):
    error = assert_error(
        post_json(api_client, ZAPIER, payload, **{"X-Webhook-Secret": RELAY_SECRET}), 400, "invalid_body"
    )
    assert "JSON object" in error["message"]


def test_body_over_the_limit_is_413_before_anything_else(api_client, relay_source):
    big = json.dumps(flat_payload(notes="x" * (1024 * 1024))).encode()
    error = assert_error(
        post_json(api_client, ZAPIER, None, raw=big, **{"X-Webhook-Secret": RELAY_SECRET}), 413, "request_too_large"
    )
    assert error["details"]["max_bytes"] == 1024 * 1024
    assert WebhookEvent.objects.count() == 0


def test_get_is_405_with_the_error_shape(api_client, relay_source):
    response = api_client.get(ZAPIER)
    assert_error(response, 405, "method_not_allowed")


@override_settings(WEBHOOK_SECRET="seeded-secret", GOOGLE_LEAD_FORM_KEY="seeded-google-key")
def test_seed_from_settings_creates_missing_sources_and_leaves_existing_ones(api_client, db):
    created = services.webhook_source_seed_from_settings()
    assert sorted(source.name for source in created) == ["google-lead-form", "zapier"]
    assert post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": "seeded-secret"}).status_code == 202
    assert post_json(api_client, GOOGLE, google_payload(google_key="seeded-google-key")).status_code == 200

    # A changed environment does not overwrite a source that exists: admin owns it now.
    with override_settings(WEBHOOK_SECRET="changed-in-the-environment"):
        assert services.webhook_source_seed_from_settings() == []
    assert WebhookSource.objects.get(name="zapier").secret == "seeded-secret"
    assert WebhookSource.objects.count() == 2


def test_a_source_revoked_by_another_process_stops_working_within_seconds(api_client, relay_source, monkeypatch):
    from django.core.cache import cache

    assert post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET}).status_code == 202
    WebhookSource.objects.filter(pk=relay_source.pk).update(is_active=False)
    cache.set(sources._SOURCES_VERSION_KEY, "bumped-by-another-process")
    monkeypatch.setattr(sources, "_SOURCES_RECHECK_SECONDS", 0)  # the recheck interval has passed
    response = post_json(api_client, ZAPIER, flat_payload(lead_id="later"), **{"X-Webhook-Secret": RELAY_SECRET})
    assert response.status_code == 401
