"""Ingestion as senders see it: authentication, idempotency, whole-batch validation, the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import path
from rest_framework.test import APIClient

from adsplatform.urls import urlpatterns as root_urlpatterns
from conversions import services
from conversions.api import GoogleConversionIngestView
from conversions.models import Conversion, ConversionAction, IngestRequest, ServiceApiKey
from tests.campaigns.factories import AdAccountFactory
from tests.conversions.conftest import GOOGLE_PURCHASE, META_PIXEL, google_conversion, meta_event

GOOGLE_URL = "/api/v1/conversions/google"
META_URL = "/api/v1/conversions/meta"

# The root alias POST /v1/conversions/google, as adsplatform/urls.py is to mount it.
urlpatterns = [
    path("v1/conversions/google", GoogleConversionIngestView.as_view(), name="conversions-google-alias"),
    *root_urlpatterns,
]


def error_fields(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == "invalid"
    return body["error"]["details"]


# --- Authentication ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_credentials_are_refused(api_client, actions):
    response = api_client.post(GOOGLE_URL, google_conversion(), format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_unknown_service_key_is_refused_without_echoing_it(api_client, actions, service_key):
    api_client.credentials(HTTP_X_SERVICE_AUTH=service_key + "x")
    response = api_client.post(GOOGLE_URL, google_conversion(), format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_service_key"
    assert service_key not in response.content.decode()
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_inactive_service_key_is_refused(service_client, actions):
    ServiceApiKey.objects.update(is_active=False)
    assert service_client.post(GOOGLE_URL, google_conversion(), format="json").status_code == 401


@pytest.mark.django_db
def test_service_key_is_accepted_and_recorded_as_the_source(service_client, actions):
    response = service_client.post(GOOGLE_URL, google_conversion(), format="json")
    assert response.status_code == 202, response.content
    assert Conversion.objects.get().source == "service:checkout service"
    assert ServiceApiKey.objects.get().last_used_at is not None


@pytest.mark.django_db
def test_a_users_jwt_needs_the_advertiser_role_on_the_actions_account(auth_client, client_with_role, actions):
    refused = auth_client.post(GOOGLE_URL, google_conversion(), format="json")  # a viewer everywhere
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    action = ConversionAction.objects.get(
        account__platform="google", external_id=google_conversion()["conversion_action"]
    )
    other_account = AdAccountFactory(platform="google")
    assert (
        client_with_role("advertiser", [other_account]).post(GOOGLE_URL, google_conversion(), format="json").status_code
        == 404
    )
    assert not Conversion.objects.exists()
    advertiser = client_with_role("advertiser", [action.account])
    assert advertiser.post(GOOGLE_URL, google_conversion(), format="json").status_code == 202


@pytest.mark.django_db
def test_only_the_keys_hash_is_stored(service_key):
    stored = ServiceApiKey.objects.get()
    assert service_key not in (stored.key_hash, stored.prefix)
    assert service_key.startswith(stored.prefix)


# --- Idempotency ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_post_is_202_and_a_repeat_is_200_with_the_first_record(service_client, actions):
    body = google_conversion()
    first = service_client.post(GOOGLE_URL, body, format="json")
    assert first.status_code == 202
    record = first.json()
    assert record["status"] == "pending"
    assert record["duplicate"] is False
    assert record["order_id"] == body["order_id"]
    assert record["value"] == "49.9"
    # The same order again (even with another click): Google keeps one conversion per order id.
    repeat = service_client.post(GOOGLE_URL, {**body, "gclid": "Cj0Other"}, format="json")
    assert repeat.status_code == 200
    assert repeat.json()["id"] == record["id"]
    assert repeat.json()["duplicate"] is True
    assert Conversion.objects.count() == 1


@pytest.mark.django_db
def test_without_order_id_click_action_and_time_identify_the_conversion(service_client, actions):
    body = google_conversion(order_id="")
    assert service_client.post(GOOGLE_URL, body, format="json").status_code == 202
    # The same moment written with another offset is the same conversion.
    moment = datetime.fromisoformat(body["conversion_date_time"]).astimezone(timezone_plus_two())
    again = service_client.post(GOOGLE_URL, {**body, "conversion_date_time": moment.isoformat()}, format="json")
    assert again.status_code == 200
    later = service_client.post(
        GOOGLE_URL,
        {**body, "conversion_date_time": (moment - timedelta(minutes=1)).isoformat()},
        format="json",
    )
    assert later.status_code == 202
    assert Conversion.objects.count() == 2


def timezone_plus_two():
    from datetime import timezone

    return timezone(timedelta(hours=2))


@pytest.mark.django_db
def test_idempotency_key_header_replays_the_first_answer(service_client, actions):
    body = {"conversions": [google_conversion(), google_conversion()]}
    first = service_client.post(GOOGLE_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="req-1")
    assert first.status_code == 202
    assert first.json()["created"] == 2
    replay = service_client.post(GOOGLE_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="req-1")
    assert replay.status_code == 200
    assert [c["id"] for c in replay.json()["conversions"]] == [c["id"] for c in first.json()["conversions"]]
    assert replay.json()["created"] == 0
    assert Conversion.objects.count() == 2
    assert IngestRequest.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_key_reused_with_another_body_is_a_conflict(service_client, actions):
    assert service_client.post(GOOGLE_URL, google_conversion(), format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
    response = service_client.post(GOOGLE_URL, google_conversion(), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Conversion.objects.count() == 1


@pytest.mark.django_db
def test_a_batch_with_a_known_item_creates_only_the_new_ones(service_client, actions):
    known = google_conversion()
    service_client.post(GOOGLE_URL, known, format="json")
    fresh = google_conversion()
    response = service_client.post(GOOGLE_URL, {"conversions": [known, fresh, fresh]}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert (body["created"], body["duplicates"]) == (1, 2)
    assert [c["duplicate"] for c in body["conversions"]] == [True, False, True]
    assert body["conversions"][1]["id"] == body["conversions"][2]["id"]
    assert Conversion.objects.count() == 2


@pytest.mark.django_db
def test_meta_event_name_and_event_id_identify_the_event(service_client, actions):
    event = meta_event()
    assert service_client.post(META_URL, event, format="json").status_code == 202
    again = service_client.post(META_URL, {"events": [event]}, format="json")
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1
    other_name = service_client.post(META_URL, {**event, "event_name": "Lead"}, format="json")
    assert other_name.status_code == 202
    assert Conversion.objects.count() == 2


@pytest.mark.django_db
def test_meta_event_without_event_id_gets_a_stable_one(service_client, actions):
    event = meta_event(event_id="")
    first = service_client.post(META_URL, event, format="json").json()
    assert first["event_id"].startswith("ibvi-")
    again = service_client.post(META_URL, event, format="json")
    assert again.status_code == 200
    assert again.json()["event_id"] == first["event_id"]


# --- Whole-batch validation ---------------------------------------------------------------------------


def _old_iso(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def at_test_time(change: dict[str, Any]) -> dict[str, Any]:
    """Times in the cases are relative to the test's clock, so they are computed when it runs,
    not when the module is collected (which happens at the real instant)."""
    return {key: value() if callable(value) else value for key, value in change.items()}


GOOGLE_400_CASES = [
    ("no click id and no identifier", {"gclid": "", "user": None}, "gclid"),
    ("no click id, blank identifiers", {"gclid": "", "user": {"email": "", "phone": ""}}, "gclid"),
    ("two click ids", {"gbraid": "abc"}, "gclid"),
    ("unknown action", {"conversion_action": "999"}, "conversion_action"),
    ("naive time", {"conversion_date_time": "2026-01-01T10:00:00"}, "conversion_date_time"),
    ("not a time", {"conversion_date_time": "yesterday"}, "conversion_date_time"),
    (
        "future time",
        {"conversion_date_time": lambda: (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        "conversion_date_time",
    ),
    ("negative value", {"conversion_value": "-1"}, "conversion_value"),
    ("bad currency", {"currency_code": "dollars"}, "currency_code"),
    ("bad email", {"user": {"email": "jane.doe-at-example"}}, "user.email"),
    ("national phone", {"user": {"phone": "650 555 1212"}}, "user.phone"),
    ("bad consent", {"consent": {"ad_user_data": "MAYBE"}}, "consent.ad_user_data"),
    ("missing action", {"conversion_action": None}, "conversion_action"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "change", "field"), GOOGLE_400_CASES, ids=[c[0] for c in GOOGLE_400_CASES])
def test_google_invalid_single_conversion(service_client, actions, case, change, field):
    body = {k: v for k, v in {**google_conversion(), **at_test_time(change)}.items() if v is not None}
    response = service_client.post(GOOGLE_URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert not Conversion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "change", "field"), GOOGLE_400_CASES, ids=[c[0] for c in GOOGLE_400_CASES])
def test_google_batch_names_each_bad_item_and_stores_nothing(service_client, actions, case, change, field):
    bad = {k: v for k, v in {**google_conversion(), **at_test_time(change)}.items() if v is not None}
    batch = {"conversions": [google_conversion(), bad, google_conversion(), bad]}
    response = service_client.post(GOOGLE_URL, batch, format="json")
    assert response.status_code == 400
    details = error_fields(response)
    assert f"conversions[1].{field}" in details
    assert f"conversions[3].{field}" in details
    assert not any(key.startswith(("conversions[0]", "conversions[2]")) for key in details)
    assert not Conversion.objects.exists()


META_400_CASES = [
    ("too old", {"event_time": lambda: int((datetime.now(UTC) - timedelta(days=8)).timestamp())}, "event_time"),
    ("future", {"event_time": lambda: int((datetime.now(UTC) + timedelta(hours=1)).timestamp())}, "event_time"),
    ("bad action source", {"action_source": "carrier_pigeon"}, "action_source"),
    ("website without url", {"event_source_url": ""}, "event_source_url"),
    ("no identifiers", {"user": {"client_user_agent": "Mozilla/5.0"}}, "user"),
    ("bad email", {"user": {"email": "nope", "client_user_agent": "UA"}}, "user.email"),
    (
        "bad ip",
        {"user": {"email": "a@b.co", "client_user_agent": "UA", "client_ip_address": "1.2.3"}},
        "user.client_ip_address",
    ),
    ("missing event name", {"event_name": None}, "event_name"),
    ("unknown pixel", {"conversion_action": "123"}, "conversion_action"),
    ("negative value", {"custom_data": {"value": "-5", "currency": "EUR"}}, "custom_data.value"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "change", "field"), META_400_CASES, ids=[c[0] for c in META_400_CASES])
def test_meta_batch_names_each_bad_event_and_stores_nothing(service_client, actions, case, change, field):
    bad = {k: v for k, v in {**meta_event(), **at_test_time(change)}.items() if v is not None}
    response = service_client.post(META_URL, {"events": [meta_event(), bad]}, format="json")
    assert response.status_code == 400, response.content
    details = error_fields(response)
    assert f"events[1].{field}" in details, details
    assert not any(key.startswith("events[0]") for key in details)
    assert not Conversion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"conversions": []}, "conversions"),
        ({"conversions": "nope"}, "conversions"),
        ([1, 2], "body"),
        ({"conversions": [1]}, "conversions[0]"),
    ],
)
def test_malformed_bodies(service_client, actions, body, field):
    response = service_client.post(GOOGLE_URL, body, format="json")
    assert response.status_code == 400
    assert field in error_fields(response)


@pytest.mark.django_db
def test_batch_limits(service_client, actions):
    too_many = {"conversions": [google_conversion()] * 2001}
    response = service_client.post(GOOGLE_URL, too_many, format="json")
    assert response.status_code in (400, 413)
    events = {"events": [meta_event()] * 1001}
    assert service_client.post(META_URL, events, format="json").status_code in (400, 413)
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_body_that_is_not_json_is_a_json_400(service_client, actions):
    response = service_client.post(GOOGLE_URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.django_db
def test_conversion_action_by_resource_name_and_by_our_id(service_client, actions):
    action = actions["google_purchase"]
    by_name = service_client.post(GOOGLE_URL, google_conversion(conversion_action=action.resource_name), format="json")
    assert by_name.status_code == 202
    assert by_name.json()["conversion_action"] == action.pk
    by_pk = service_client.post(GOOGLE_URL, google_conversion(conversion_action=str(action.pk)), format="json")
    assert by_pk.json()["conversion_action_external_id"] == action.external_id


@pytest.mark.django_db
def test_inactive_action_is_refused(service_client, actions):
    actions["google_purchase"].is_active = False
    actions["google_purchase"].save()
    response = service_client.post(GOOGLE_URL, google_conversion(), format="json")
    assert response.status_code == 400
    assert "conversion_action" in error_fields(response)


@pytest.mark.django_db
@pytest.mark.urls("tests.conversions.test_ingest_api")
def test_root_alias_v1_conversions_google(service_client, actions):
    response = service_client.post("/v1/conversions/google", google_conversion(), format="json")
    assert response.status_code == 202
    invalid = service_client.post("/v1/conversions/google", {"gclid": "x"}, format="json")
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "invalid"


# --- What is stored: hashes only ---------------------------------------------------------------------


@pytest.mark.django_db
def test_stored_identifiers_are_the_platforms_hashes(service_client, actions):
    import hashlib

    service_client.post(GOOGLE_URL, google_conversion(), format="json")
    google = Conversion.objects.get(platform="google")
    assert google.hashed_email == hashlib.sha256(b"janedoe@gmail.com").hexdigest()
    assert google.payload["hashed_phone"] == hashlib.sha256(b"+16505551212").hexdigest()
    service_client.post(META_URL, meta_event(), format="json")
    meta = Conversion.objects.get(platform="meta")
    assert meta.payload["user_data"]["em"] == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    assert meta.payload["user_data"]["ph"] == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    assert meta.payload["user_data"]["fn"] == "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
    assert meta.action.external_id == META_PIXEL


# --- Reading the ledger and the actions ------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_lists_with_filters_for_jwt_users(auth_client, service_client, actions):
    service_client.post(GOOGLE_URL, {"conversions": [google_conversion(), google_conversion()]}, format="json")
    service_client.post(META_URL, meta_event(), format="json")
    everything = auth_client.get("/api/v1/conversions/")
    assert everything.status_code == 200
    assert everything.json()["count"] == 3
    google = auth_client.get("/api/v1/conversions/", {"platform": "google", "status": "pending"}).json()
    assert google["count"] == 2
    order_id = google["results"][0]["order_id"]
    assert auth_client.get("/api/v1/conversions/", {"order_id": order_id}).json()["count"] == 1
    since = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert auth_client.get("/api/v1/conversions/", {"created_after": since}).json()["count"] == 0
    assert auth_client.get("/api/v1/conversions/", {"status": "bogus"}).status_code == 400


@pytest.mark.django_db
def test_ledger_needs_a_jwt(service_client, api_client, actions):
    assert api_client.get("/api/v1/conversions/").status_code == 401
    assert service_client.get("/api/v1/conversions/").status_code == 401


@pytest.mark.django_db
def test_conversion_actions_list_the_sandbox_actions(auth_client, actions):
    body = auth_client.get("/api/v1/conversion-actions/").json()
    ids = {a["external_id"] for a in body["results"]}
    assert {"880000001", "880000002", "880000011", "880000012", META_PIXEL} <= ids
    google = auth_client.get("/api/v1/conversion-actions/", {"platform": "google"}).json()["results"]
    assert all(a["resource_name"].startswith("customers/") for a in google)


@pytest.mark.django_db
def test_schema_describes_the_conversion_endpoints(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for fragment in ("/api/v1/conversions/google", "/api/v1/conversions/meta", "/api/v1/conversion-actions/"):
        assert fragment in schema
    assert "X-Service-Auth" in schema


def test_api_client_is_plain():
    # Guards the fixture contract this module relies on: an anonymous client sends no headers.
    assert not APIClient()._credentials


@pytest.mark.django_db
@pytest.mark.parametrize(
    "instant",
    [
        "2026-11-01T06:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
        "2027-01-01T00:30:00+00:00",
        "2028-03-01T12:00:00+00:00",
    ],
    ids=["New York falls back", "Europe springs forward", "new year", "after 29 February"],
)
def test_metas_seven_day_window_is_seven_times_24_hours_on_any_calendar(service_client, actions, clock, instant):
    """The limit is an age, not a count of calendar days: a week that holds a 23- or 25-hour day,
    a year's end or 29 February is still 168 hours."""
    clock.move_to(instant, tick=False)
    now = datetime.now(UTC)
    inside = meta_event(event_time=int((now - timedelta(days=7) + timedelta(hours=1)).timestamp()))
    outside = meta_event(event_time=int((now - timedelta(days=7) - timedelta(hours=1)).timestamp()))

    assert service_client.post(META_URL, inside, format="json").status_code == 202
    refused = service_client.post(META_URL, outside, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["event_time"] == [
        "Meta accepts events up to 7 days old; this one is older."
    ]
    assert Conversion.objects.count() == 1


# --- Identifier-only conversions (enhanced conversions for leads) ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "user",
    [
        {"email": "Jane.Doe@Gmail.com"},
        {"phone": "+1 (650) 555-1212"},
        {"email": "jane@example.com", "phone": "+16505551212"},
    ],
    ids=["email", "phone", "both"],
)
def test_google_conversion_without_a_click_id_is_accepted_with_identifiers(service_client, actions, user):
    body = google_conversion(gclid="", user=user)
    response = service_client.post(GOOGLE_URL, body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["click_id_type"] == ""
    conversion = Conversion.objects.get()
    assert not {"gclid", "gbraid", "wbraid"} & set(conversion.payload)
    assert bool(conversion.hashed_email) == ("email" in user)
    assert bool(conversion.hashed_phone) == ("phone" in user)
    assert "Jane.Doe" not in str(conversion.payload)  # hashed, never raw


@pytest.mark.django_db
def test_identifier_only_conversion_without_order_id_is_deduped_on_person_and_moment(service_client, actions):
    body = google_conversion(gclid="", order_id="", user={"email": "jane@example.com"})
    assert service_client.post(GOOGLE_URL, body, format="json").status_code == 202
    again = service_client.post(GOOGLE_URL, {**body, "user": {"email": " JANE@example.com "}}, format="json")
    assert again.status_code == 200
    other_person = service_client.post(GOOGLE_URL, {**body, "user": {"email": "john@example.com"}}, format="json")
    assert other_person.status_code == 202
    assert Conversion.objects.count() == 2


@pytest.mark.django_db
def test_neither_click_id_nor_identifier_names_what_is_missing(service_client, actions):
    body = google_conversion(gclid="")
    body.pop("user")
    response = service_client.post(GOOGLE_URL, body, format="json")
    assert response.status_code == 400
    (message,) = error_fields(response)["gclid"]
    for name in ("gclid", "gbraid", "wbraid", "user.email", "user.phone"):
        assert name in message
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_service_key_scopes_and_accounts_limit_what_it_may_do(api_client, actions):
    """A key reads the actions it must post with; a key without a scope, or limited to other
    accounts, is refused with a 403 naming what is missing, and nothing is stored."""
    key, raw = services.service_api_key_create(name="checkout")
    client = APIClient(HTTP_X_SERVICE_AUTH=raw)
    listed = {a["external_id"] for a in client.get("/api/v1/conversion-actions/").json()["results"]}
    assert GOOGLE_PURCHASE in listed and META_PIXEL in listed

    key.accounts.set([actions["meta_pixel"].account])
    listed = {a["external_id"] for a in client.get("/api/v1/conversion-actions/").json()["results"]}
    assert listed == {META_PIXEL}
    refused = client.post(GOOGLE_URL, google_conversion(), format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"

    key.accounts.clear()
    key.scopes = ["conversion_actions:read"]
    key.save()
    refused = client.post(GOOGLE_URL, google_conversion(), format="json")
    assert refused.status_code == 403 and "conversions:write" in refused.json()["error"]["message"]
    assert not Conversion.objects.exists()

    key.scopes = ["conversions:write"]
    key.save()
    assert client.get("/api/v1/conversion-actions/").status_code == 403
    assert client.post(GOOGLE_URL, google_conversion(), format="json").status_code == 202
