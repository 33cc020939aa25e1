"""Fixtures shared by every test: users, and API clients that authenticate like real ones."""

from __future__ import annotations

import datetime as dt
import os
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

# No secret, token or raw email may reach a log line anywhere in the test session.
pytest_plugins = ["tests.log_guard"]

PASSWORD = "correct-horse-battery-staple"

# The instant every test runs at unless it pins another: an ordinary mid-month Wednesday, the same
# date in every account time zone the tests use and weeks from any daylight-saving change. Time
# still ticks from there (timeouts and leases behave), but no test's outcome depends on the day
# the suite happens to run.
DEFAULT_NOW = dt.datetime(2026, 6, 17, 15, 0, tzinfo=dt.UTC)

# The Google Ads emulator is reached over gRPC, which turns a call's timeout into an absolute
# deadline from Python's clock and hands it to its C core, which reads the real clock: at a pinned
# instant in the past every call would be "Deadline Exceeded" before it is sent. Tests that start
# it run at the real instant (unless they pin one and keep to the Graph emulator); their dates are
# still read from this clock, never from a second source. The fixtures that start it:
GRPC_EMULATOR_FIXTURES = frozenset({"ad_sandboxes", "sandboxes", "start_sandbox"})


@pytest.fixture(scope="session", autouse=True)
def _clock_baseline():
    """A traveller at the real instant for the whole session, under every test's own.

    time-machine patches the clocks while any traveller is active and unpatches them when the
    last one stops. Session-long threads (the emulators' servers) read the clock all the time;
    one that does so at the moment a test's traveller stops finds the patch half undone and dies
    ("Not currently time-travelling"), and a gRPC server whose serving thread died never finishes
    stopping. With this traveller underneath, the patch stays for the whole session and the
    tests without a pinned instant still read the real time (it ticks from the real now).
    """
    import time_machine

    baseline = time_machine.travel(dt.datetime.now(dt.UTC), tick=True)
    baseline.start()
    yield
    baseline.stop()


@pytest.fixture(autouse=True)
def clock(request, time_machine):
    """The one source of "now" in the tests (time-machine: every clock in the process, ticking).

    Pin another instant with ``@pytest.mark.clock("2024-02-29T23:30:00+00:00")`` (or a datetime),
    or move during a test with ``clock.move_to(...)`` / ``clock.shift(...)``. Django, the emulators'
    threads, JWT expiry and the Celery tasks run in-process all see it.
    """
    marker = request.node.get_closest_marker("clock")
    if marker:
        time_machine.move_to(marker.args[0], tick=True)
    elif GRPC_EMULATOR_FIXTURES.isdisjoint(request.fixturenames):
        time_machine.move_to(DEFAULT_NOW, tick=True)
    return time_machine


@pytest.fixture
def today(clock) -> dt.date:
    """The site's date at the test's instant (an account's own is campaigns.services.account_today)."""
    return timezone.localdate()


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
    """A non-staff user with the viewer role on every account: reads the API, changes nothing."""
    from campaigns.access import VIEWER, account_access_grant

    analyst = get_user_model().objects.create_user("analyst", "analyst@example.com", PASSWORD)
    account_access_grant(user=analyst, account=None, role=VIEWER)
    return analyst


@pytest.fixture
def staff_user(db):
    """A superuser staff member: the operator who works in Django admin."""
    return get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)


@pytest.fixture
def advertiser_client(client_with_role):
    """A JWT client of an advertiser on every account: moves leads, changes budgets, syncs."""
    return client_with_role("advertiser", username="advertiser")


@pytest.fixture
def client_with_role(db):
    """A JWT client for a new user holding ``role`` on ``accounts`` (None: every account)."""
    from campaigns.access import account_access_grant

    made = iter(range(1, 1000))

    def make(role: str, accounts=None, *, username: str | None = None) -> APIClient:
        person = get_user_model().objects.create_user(username or f"{role}-{next(made)}", password=PASSWORD)
        for account in accounts if accounts is not None else [None]:
            account_access_grant(user=person, account=account, role=role)
        client = _jwt_client(person)
        client.user = person
        return client

    return make


@pytest.fixture
def api_client():
    """An anonymous DRF client."""
    return APIClient()


@pytest.fixture
def auth_client(user):
    """A client sending the user's JWT access token, as a frontend client would."""
    return _jwt_client(user)


@pytest.fixture
def staff_client(staff_user):
    """A client sending the superuser's JWT access token."""
    return _jwt_client(staff_user)


def _jwt_client(person) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(person).access_token}")
    return client


@pytest.fixture
def jwt_client_for():
    """A client sending a given user's JWT access token."""
    return _jwt_client


# --- The ad platform sandbox, for flows that go through the real SDKs --------------------


@pytest.fixture(scope="session")
def sandbox_cert_dir_shared(tmp_path_factory):
    """One CA for the whole session: gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH only once,
    when the process opens its first secure channel, so every emulator reuses it."""
    from pathlib import Path

    from platforms.registry import SANDBOX_CA_FILENAME
    from platforms.sandbox.google.certs import ensure_tls_files

    trusted = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "")
    if trusted and Path(trusted).name == SANDBOX_CA_FILENAME:
        cert_dir = Path(trusted).parent
    else:
        cert_dir = tmp_path_factory.mktemp("sandbox-tls")
    ensure_tls_files(cert_dir)
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(cert_dir / SANDBOX_CA_FILENAME)
    return cert_dir


@pytest.fixture(scope="session")
def ad_sandboxes(sandbox_cert_dir_shared):
    """Both emulators (Google Ads gRPC + OAuth, Graph API) on free loopback ports, demo data."""
    from platforms.sandbox import google as google_sandbox
    from platforms.sandbox import meta as meta_sandbox
    from platforms.sandbox.faults import Faults

    google = google_sandbox.start(host="127.0.0.1", cert_dir=sandbox_cert_dir_shared, faults=Faults(seed=11))
    meta = meta_sandbox.start(host="127.0.0.1", faults=Faults(seed=13))
    yield SimpleNamespace(google=google, meta=meta, cert_dir=sandbox_cert_dir_shared)
    google.stop()
    meta.stop()


@pytest.fixture
def sandbox(ad_sandboxes, settings):
    """Settings pointing both adapters at the running emulators; faults cleared after the test."""
    from platforms.registry import reset_platforms

    settings.ADS_SANDBOX = True
    settings.ADS_SANDBOX_HOST = "127.0.0.1"
    settings.ADS_SANDBOX_GOOGLE_PORT = ad_sandboxes.google.grpc_port
    settings.ADS_SANDBOX_OAUTH_PORT = ad_sandboxes.google.oauth_port
    settings.ADS_SANDBOX_META_PORT = ad_sandboxes.meta.port
    settings.ADS_SANDBOX_DIR = ad_sandboxes.cert_dir
    reset_platforms()
    yield ad_sandboxes
    ad_sandboxes.google.state.faults.reset()
    ad_sandboxes.meta.state.faults.reset()
    reset_platforms()
