"""Fixtures shared by every test: users, and API clients that authenticate like real ones."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _isolated_cache(settings, tmp_path):
    """Each test gets an empty cache of its own, so throttles and cached answers never leak."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": str(tmp_path),
        }
    }
    from django.core.cache import caches

    caches._settings = None  # rebuild from the new settings
    for alias in list(caches):
        del caches[alias]
    yield


@pytest.fixture
def user(db):
    """A non-staff user: can read the API, cannot change budgets."""
    return get_user_model().objects.create_user("analyst", "analyst@example.com", PASSWORD)


@pytest.fixture
def staff_user(db):
    """A superuser staff member: the operator who works in Django admin."""
    return get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)


@pytest.fixture
def api_client():
    """An anonymous DRF client."""
    return APIClient()


@pytest.fixture
def auth_client(user):
    """A client sending the user's JWT access token, as a frontend client would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def staff_client(staff_user):
    """A client sending the superuser's JWT access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(staff_user).access_token}")
    return client
