"""A password change or reset, or deactivation, ends every token the user holds."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from adsplatform.auth import user_tokens_revoke
from tests.conftest import PASSWORD

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
ME_URL = "/api/v1/alerts/"  # any JWT-only read

pytestmark = pytest.mark.django_db


def _login(user, password: str = PASSWORD) -> dict[str, str]:
    response = APIClient().post(TOKEN_URL, {"username": user.username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _read_with(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get(ME_URL).status_code


def _refresh(refresh: str) -> int:
    return APIClient().post(REFRESH_URL, {"refresh": refresh}, format="json").status_code


def test_tokens_work_until_the_password_changes(user):
    first, second = _login(user), _login(user)  # two devices
    assert _read_with(first["access"]) == 200
    user.set_password("a-brand-new-passphrase-42")
    user.save()
    for tokens in (first, second):
        assert _read_with(tokens["access"]) == 401
        assert _refresh(tokens["refresh"]) == 401
    # The new password gives tokens that work.
    fresh = _login(user, "a-brand-new-passphrase-42")
    assert _read_with(fresh["access"]) == 200
    assert _refresh(fresh["refresh"]) == 200


def test_a_refreshed_access_token_dies_with_the_password_too(user):
    tokens = _login(user)
    rotated = APIClient().post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json").json()
    user.set_password("a-brand-new-passphrase-42")
    user.save()
    assert _read_with(rotated["access"]) == 401
    assert _refresh(rotated["refresh"]) == 401


def test_deactivation_ends_tokens_and_reactivation_does_not_revive_them(user):
    tokens = _login(user)
    user.is_active = False
    user.save()
    assert _read_with(tokens["access"]) == 401
    assert _refresh(tokens["refresh"]) == 401
    user.is_active = True
    user.save()
    assert _refresh(tokens["refresh"]) == 401  # blacklisted, not merely refused while inactive


def test_the_admin_password_form_ends_tokens(user, staff_user, client):
    tokens = _login(user)
    client.force_login(staff_user)
    response = client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": "a-brand-new-passphrase-42", "password2": "a-brand-new-passphrase-42", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert _read_with(tokens["access"]) == 401
    assert _refresh(tokens["refresh"]) == 401


def test_other_saves_leave_tokens_alone(user):
    tokens = _login(user)
    user.first_name = "Ada"
    user.save()
    get_user_model().objects.get(pk=user.pk).save(update_fields=["last_login"])
    assert _read_with(tokens["access"]) == 200
    assert _refresh(tokens["refresh"]) == 200


def test_revoke_blacklists_only_that_users_live_tokens(user, staff_user):
    _login(user), _login(user), _login(staff_user)
    assert user_tokens_revoke(user=user) == 2
    assert user_tokens_revoke(user=user) == 0  # already blacklisted
    assert BlacklistedToken.objects.filter(token__user=staff_user).count() == 0
    assert OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True).count() == 0
