"""django-axes: repeated wrong passwords for one username from one address lock that pair out,
in the admin and at the JWT token endpoint alike; the right password still works before that."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.conftest import PASSWORD

TOKEN_URL = "/api/v1/auth/token/"
ADMIN_LOGIN = "/admin/login/?next=/admin/"

pytestmark = pytest.mark.django_db


def _admin_login(client, username: str, password: str, address: str = "192.0.2.10"):
    return client.post(ADMIN_LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_admin_login_works_and_a_mistake_is_forgiven_by_success(client, staff_user):
    assert _admin_login(client, staff_user.username, "wrong").status_code == 200  # the form again
    response = _admin_login(client, staff_user.username, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_admin_login_locks_out_after_the_failure_limit(client, staff_user):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _admin_login(client, staff_user.username, "wrong").status_code == 200
    locked = _admin_login(client, staff_user.username, "wrong")
    assert locked.status_code == 429
    assert b"Login locked" in locked.content
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    # Now even the right password is refused, from that address...
    assert _admin_login(client, staff_user.username, PASSWORD).status_code == 429
    # ...but not from another one: a guesser cannot lock the operator out everywhere.
    other = _admin_login(client, staff_user.username, PASSWORD, address="198.51.100.20")
    assert other.status_code == 302


def test_lockout_ends_after_the_cool_off(client, staff_user, clock):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _admin_login(client, staff_user.username, "wrong")
    assert _admin_login(client, staff_user.username, PASSWORD).status_code == 429
    clock.shift(settings.AXES_COOLOFF_TIME.total_seconds() + 1)
    assert _admin_login(client, staff_user.username, PASSWORD).status_code == 302


def test_token_endpoint_still_issues_tokens(api_client, user):
    response = api_client.post(TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_failed_token_logins_count_towards_the_same_lockout(api_client, client, staff_user):
    """The API is no side door: guesses there lock the admin login for that user and address."""
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = api_client.post(
            TOKEN_URL, {"username": staff_user.username, "password": "wrong"}, format="json", REMOTE_ADDR="192.0.2.10"
        )
        assert response.status_code == 401
    locked = api_client.post(
        TOKEN_URL, {"username": staff_user.username, "password": "wrong"}, format="json", REMOTE_ADDR="192.0.2.10"
    )
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert "Retry-After" in locked.headers
    right = api_client.post(
        TOKEN_URL, {"username": staff_user.username, "password": PASSWORD}, format="json", REMOTE_ADDR="192.0.2.10"
    )
    assert right.status_code == 429 and "access" not in right.json()
    assert _admin_login(client, staff_user.username, PASSWORD, address="192.0.2.10").status_code == 429


def test_lockout_uses_the_proxy_address_behind_fly(client, staff_user, settings):
    settings.TRUSTED_PROXY_CLIENT_IP_HEADER = "Fly-Client-IP"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            ADMIN_LOGIN, {"username": staff_user.username, "password": "wrong"}, HTTP_FLY_CLIENT_IP="203.0.113.7"
        )
    blocked = client.post(
        ADMIN_LOGIN, {"username": staff_user.username, "password": PASSWORD}, HTTP_FLY_CLIENT_IP="203.0.113.7"
    )
    assert blocked.status_code == 429
    # Same socket peer (the proxy), another client: not locked.
    allowed = client.post(
        ADMIN_LOGIN, {"username": staff_user.username, "password": PASSWORD}, HTTP_FLY_CLIENT_IP="203.0.113.8"
    )
    assert allowed.status_code == 302
