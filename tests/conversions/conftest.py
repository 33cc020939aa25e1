"""Both ad platform emulators for the session, the registry's adapters pointed at them, and
service-key clients. Uploads go through the official SDKs over real sockets; nothing is mocked.

gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH once per process, when the first secure channel
opens, so the session shares one CA: an already trusted sandbox CA directory is reused.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from conversions import bootstrap
from conversions.models import ConversionAction
from platforms.registry import SANDBOX_CA_FILENAME, reset_platforms
from platforms.sandbox import google as google_sandbox
from platforms.sandbox import meta as meta_sandbox
from platforms.sandbox.faults import Faults
from tests.conversions.factories import ServiceApiKeyFactory

GOOGLE_CUSTOMER = "1234567890"
GOOGLE_PURCHASE = "880000001"
GOOGLE_LEAD = "880000002"
META_ACCOUNT = "300000000000001"
META_PIXEL = "400000000000001"


@dataclass
class Sandboxes:
    google: Any  # platforms.sandbox.google.GoogleSandbox
    meta: Any  # platforms.sandbox.meta.MetaSandbox


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """Google (gRPC + OAuth) and Meta (Graph HTTP) emulators on ephemeral ports, and settings
    that point the platform registry at them for the whole session."""
    already_trusted = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "")
    if already_trusted and Path(already_trusted).name == SANDBOX_CA_FILENAME:
        cert_dir = Path(already_trusted).parent
    else:
        cert_dir = tmp_path_factory.mktemp("conversions-sandbox")
    google = google_sandbox.start(host="127.0.0.1", cert_dir=cert_dir, faults=Faults(seed=11))
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(google.ca_path)
    meta = meta_sandbox.start(host="127.0.0.1", faults=Faults(seed=11))
    overrides = override_settings(
        ADS_SANDBOX=True,
        ADS_SANDBOX_HOST="127.0.0.1",
        ADS_SANDBOX_GOOGLE_PORT=google.grpc_port,
        ADS_SANDBOX_OAUTH_PORT=google.oauth_port,
        ADS_SANDBOX_META_PORT=meta.port,
        ADS_SANDBOX_DIR=cert_dir,
    )
    overrides.enable()
    reset_platforms()
    try:
        yield Sandboxes(google=google, meta=meta)
    finally:
        overrides.disable()
        reset_platforms()
        google.stop()
        meta.stop()


@pytest.fixture
def sandbox(sandboxes: Sandboxes) -> Iterator[Sandboxes]:
    """The session's emulators, with any faults a test injected cleared afterwards, and fresh
    adapters: one that met a quota error remembers to wait, as it should in production."""
    yield sandboxes
    sandboxes.google.state.faults.reset()
    sandboxes.meta.state.faults.reset()
    reset_platforms()


@pytest.fixture(autouse=True)
def _no_upload_kick(settings):
    """Ingestion would ask a worker to upload; tests run the uploader themselves."""
    settings.CONVERSIONS_UPLOAD_ON_INGEST = False


@pytest.fixture
def actions(db, sandboxes: Sandboxes) -> dict[str, ConversionAction]:
    """The sandbox accounts' conversion actions, as start-up seeds them: the accounts are
    discovered, then their actions (Meta: pixels) read from the emulators."""
    bootstrap.seed_sandbox_actions()
    by_id = {a.external_id: a for a in ConversionAction.objects.select_related("account")}
    return {
        "google_purchase": by_id[GOOGLE_PURCHASE],
        "google_lead": by_id[GOOGLE_LEAD],
        "meta_pixel": by_id[META_PIXEL],
    }


@pytest.fixture
def service_key(db) -> str:
    """A raw service API key, as an operator would copy it from admin."""
    return ServiceApiKeyFactory(name="checkout service").raw_key


@pytest.fixture
def service_client(service_key: str) -> APIClient:
    """A server-to-server client sending X-Service-Auth."""
    client = APIClient()
    client.credentials(HTTP_X_SERVICE_AUTH=service_key)
    return client


def unique(prefix: str) -> str:
    """Ids unique across the session: the emulators keep what earlier tests uploaded."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def google_conversion(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gclid": unique("Cj0KCQ"),
        "conversion_action": GOOGLE_PURCHASE,
        "conversion_date_time": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "conversion_value": "49.90",
        "currency_code": "USD",
        "order_id": unique("order-"),
        "user": {"email": "Jane.Doe@Gmail.com", "phone": "+1 (650) 555-1212"},
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
    }
    body.update(overrides)
    return body


def meta_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": int(datetime.now(UTC).timestamp()) - 60,
        "event_id": unique("evt-"),
        "action_source": "website",
        "event_source_url": "https://shop.example.com/thank-you",
        "user": {
            "email": "John_Smith@gmail.com",
            "phone": "(650)555-1212",
            "country": "US",
            "first_name": "Mary",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "client_ip_address": "203.0.113.7",
        },
        "custom_data": {"value": "12.50", "currency": "EUR", "order_id": unique("order-")},
    }
    body.update(overrides)
    return body
