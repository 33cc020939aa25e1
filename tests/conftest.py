"""Fixtures shared by every test: users, and API clients that authenticate like real ones."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    """Every test starts with an empty cache: the real Redis when REDIS_URL is set (CI),
    else process memory instead of the shared files under var/ a local run uses."""
    # Tests render admin pages without running collectstatic first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    if not settings.REDIS_URL:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
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
