"""JWT auth at the three token paths, and one JSON error shape for every API error."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _obtain(api_client, username="analyst", password=PASSWORD):
    return api_client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")


def test_obtain_refresh_rotate_and_reuse_is_refused(api_client, user):
    tokens = _obtain(api_client).json()
    assert set(tokens) == {"access", "refresh"}

    rotated = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != tokens["refresh"]

    reused = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"

    # The new refresh token still works.
    again = api_client.post("/api/v1/auth/token/refresh/", {"refresh": rotated.json()["refresh"]}, format="json")
    assert again.status_code == 200


def test_blacklisted_refresh_token_stops_working(api_client, user):
    refresh = _obtain(api_client).json()["refresh"]
    assert api_client.post("/api/v1/auth/token/blacklist/", {"refresh": refresh}, format="json").status_code == 200
    after = api_client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert after.status_code == 401


def test_wrong_password_is_401_in_the_error_shape(api_client, user):
    response = _obtain(api_client, password="wrong")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "no_active_account"
    assert error["message"]


def test_access_token_opens_the_api_and_its_absence_does_not(api_client, user):
    access = _obtain(api_client).json()["access"]
    assert api_client.get("/api/schema/").status_code == 200
    denied = api_client.get("/api/v1/nothing-here/")
    assert denied.status_code == 404
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert api_client.post("/api/v1/auth/token/refresh/", {}, format="json").status_code == 400


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/does-not-exist/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_json_is_a_400_that_says_so(client, user):
    response = client.post("/api/v1/auth/token/", data='{"username": "analyst",', content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert "JSON" in error["message"]


def test_oversize_body_is_413_before_parsing(client):
    body = '{"username": "' + "x" * (1024 * 1024) + '"}'
    response = client.post("/api/v1/auth/token/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_field_errors_come_back_in_details(api_client):
    response = api_client.post("/api/v1/auth/token/", {"username": "analyst"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "password" in error["details"]


def test_token_endpoint_throttles_password_guessing(api_client, user, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    # DRF copies the rates onto the class at import; a lower rate keeps the test short.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"})
    codes = [_obtain(api_client, password=f"guess-{i}").status_code for i in range(5)]
    assert codes[:3] == [401, 401, 401]
    assert codes[3:] == [429, 429]
    assert _obtain(api_client).json()["error"]["code"] == "throttled"


def test_docs_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
