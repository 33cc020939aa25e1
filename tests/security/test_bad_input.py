"""Bad input is a 400 in the one error shape, never a 500 and never accepted then lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from rest_framework.test import APIClient

from conversions.models import Conversion
from tests.conftest import PASSWORD
from tests.conversions import conftest as conversions_fixtures
from tests.conversions.conftest import google_conversion, meta_event

# The conversions app's fixtures (the emulators its actions are discovered from, a service key),
# registered here by name.
_no_upload_kick = conversions_fixtures._no_upload_kick
sandboxes = conversions_fixtures.sandboxes
actions = conversions_fixtures.actions
service_key = conversions_fixtures.service_key
service_client = conversions_fixtures.service_client

GOOGLE_URL = "/api/v1/conversions/google"


def _assert_error(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


# --- Times and dates out of range ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+02:00",  # parses, but is before year 1 in UTC
        "9999-12-31T23:59:59-05:00",  # after 9999 in UTC
        "99999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_conversion_times_outside_the_calendar_are_400(service_client, actions, moment):
    error = _assert_error(
        service_client.post(GOOGLE_URL, google_conversion(conversion_date_time=moment), format="json")
    )
    assert list(error["details"]) == ["conversion_date_time"]
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_google_refuses_conversions_older_than_90_days_by_name(service_client, actions):
    too_old = (datetime.now(UTC) - timedelta(days=90, minutes=1)).isoformat()
    error = _assert_error(
        service_client.post(GOOGLE_URL, google_conversion(conversion_date_time=too_old), format="json")
    )
    assert "90 days" in error["details"]["conversion_date_time"][0]
    assert not Conversion.objects.exists()
    recent = (datetime.now(UTC) - timedelta(days=89)).isoformat()
    assert (
        service_client.post(GOOGLE_URL, google_conversion(conversion_date_time=recent), format="json").status_code
        == 202
    )


@pytest.mark.django_db
def test_meta_names_its_7_day_window(service_client, actions):
    old = int((datetime.now(UTC) - timedelta(days=8)).timestamp())
    response = service_client.post("/api/v1/conversions/meta", meta_event(event_time=old), format="json")
    assert "7 days" in _assert_error(response)["details"]["event_time"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["0001-01-01", "99999-01-01", "1999-12-31", "2026-02-30"])
@pytest.mark.parametrize("name", ["date_from", "date_to"])
@pytest.mark.parametrize("path", ["/api/v1/campaigns/", "/api/v1/summary/"])
def test_date_range_parameters_out_of_range_are_400(auth_client, path, name, value):
    error = _assert_error(auth_client.get(path, {name: value}))
    assert name in error["details"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["99999-01-01", "0001-13-01T00:00:00Z"])
def test_ledger_time_filters_out_of_range_are_400(auth_client, value):
    assert (
        "created_after" in _assert_error(auth_client.get("/api/v1/conversions/", {"created_after": value}))["details"]
    )


@pytest.mark.django_db
def test_ledger_time_filters_at_the_calendar_edges_answer(auth_client):
    for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        assert auth_client.get("/api/v1/conversions/", {"occurred_before": value}).status_code == 200


# --- Nesting depth -----------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"conversions": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.django_db
def test_deep_json_is_400_on_an_authenticated_endpoint(service_client, actions):
    for body in (_nested(100), b"[" * 200_000 + b"]" * 200_000):
        response = service_client.post(GOOGLE_URL, body, content_type="application/json")
        assert _assert_error(response)["code"] == "json_too_deep"
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_deep_json_is_400_where_no_authentication_runs(api_client):
    """The token endpoint parses before anyone is known: the limit holds there too."""
    body = b'{"username": "x", "password": "y", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = api_client.post("/api/v1/auth/token/", body, content_type="application/json")
    assert _assert_error(response)["code"] == "json_too_deep"


@pytest.mark.django_db
def test_brackets_inside_strings_do_not_count(api_client, user):
    note = "[{" * 500
    body = f'{{"username": "{user.username}", "password": "{PASSWORD}", "note": "{note}"}}'.encode()
    assert api_client.post("/api/v1/auth/token/", body, content_type="application/json").status_code == 200


def test_depth_counter_agrees_with_the_decoder():
    from adsplatform.parsers import json_depth_exceeds

    assert not json_depth_exceeds(b'{"a": [1, {"b": "]]]]"}]}', 3)
    assert json_depth_exceeds(b'{"a": [1, {"b": [2]}]}', 3)
    assert not json_depth_exceeds(b'["\\"[[[[" , []]', 2)


# --- The same order id at once ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_order_id_posted_concurrently_is_created_once(actions, service_key):
    """Real threads, real PostgreSQL transactions: one 202, every other answer 200 with that record."""
    senders = 6
    body = google_conversion()
    barrier = threading.Barrier(senders)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send() -> None:
        client = APIClient()
        client.credentials(HTTP_X_SERVICE_AUTH=service_key)
        try:
            barrier.wait(timeout=10)
            response = client.post(GOOGLE_URL, body, format="json")
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    codes = sorted(code for code, _ in answers)
    assert codes == [200] * (senders - 1) + [202], answers
    assert len({record["id"] for _, record in answers}) == 1
    assert [record["duplicate"] for code, record in answers if code == 200] == [True] * (senders - 1)
    assert Conversion.objects.filter(order_id=body["order_id"]).count() == 1
