"""Password guessing is throttled; refresh tokens are single use; a logged-out token is dead."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.conftest import PASSWORD

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
BLACKLIST_URL = "/api/v1/auth/token/blacklist/"

pytestmark = pytest.mark.django_db


def _allowed_per_window() -> int:
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["auth"]
    return int(rate.split("/")[0])


def test_password_guessing_is_throttled(api_client, user):
    # One username from one address meets django-axes' lockout first (the failure that reaches
    # AXES_FAILURE_LIMIT is already answered as one); both answer 429.
    allowed = min(_allowed_per_window(), settings.AXES_FAILURE_LIMIT - 1)
    codes = [
        api_client.post(TOKEN_URL, {"username": user.username, "password": f"guess-{n}"}, format="json").status_code
        for n in range(allowed + 5)
    ]
    assert set(codes[:allowed]) == {401}
    assert set(codes[allowed:]) == {429}


def test_throttled_client_is_refused_even_with_the_right_password(api_client, user):
    for n in range(_allowed_per_window()):
        api_client.post(TOKEN_URL, {"username": user.username, "password": f"guess-{n}"}, format="json")
    response = api_client.post(TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert "access" not in response.json()
    assert response.json()["error"]["code"]
    assert "Retry-After" in response.headers


def test_guessing_across_usernames_is_throttled_too(api_client, user):
    """The limit is per client, so spraying one password over many usernames gains nothing."""
    allowed = _allowed_per_window()
    codes = [
        api_client.post(TOKEN_URL, {"username": f"user{n}", "password": PASSWORD}, format="json").status_code
        for n in range(allowed + 1)
    ]
    assert codes[-1] == 429


def test_refresh_endpoint_is_throttled(api_client):
    codes = [
        api_client.post(REFRESH_URL, {"refresh": f"not-a-token-{n}"}, format="json").status_code
        for n in range(_allowed_per_window() + 1)
    ]
    assert codes[-1] == 429


def _login(api_client, user) -> dict[str, str]:
    response = api_client.post(TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def test_rotated_refresh_token_is_refused(api_client, user):
    first = _login(api_client, user)
    rotated = api_client.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first["refresh"]
    again = api_client.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json")
    assert again.status_code == 401
    assert "access" not in again.json()
    # The rotation's own new token still works once.
    assert api_client.post(REFRESH_URL, {"refresh": rotated.json()["refresh"]}, format="json").status_code == 200


def test_blacklisted_refresh_token_is_refused(api_client, user):
    tokens = _login(api_client, user)
    assert api_client.post(BLACKLIST_URL, {"refresh": tokens["refresh"]}, format="json").status_code == 200
    assert api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json").status_code == 401


def test_access_token_is_not_accepted_as_a_refresh_token(api_client, user):
    tokens = _login(api_client, user)
    assert api_client.post(REFRESH_URL, {"refresh": tokens["access"]}, format="json").status_code == 401


def test_tampered_access_token_is_refused(api_client, user):
    tokens = _login(api_client, user)
    header, payload, signature = tokens["access"].split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert api_client.get("/api/v1/campaigns/").status_code == 401


def test_unsigned_token_is_refused(api_client, user):
    """The "alg": "none" trick: a token without a signature must not authenticate anyone."""
    import base64
    import json

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    tokens = _login(api_client, user)
    claims = json.loads(base64.urlsafe_b64decode(tokens["access"].split(".")[1] + "=="))
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {unsigned}")
    assert api_client.get("/api/v1/campaigns/").status_code == 401
