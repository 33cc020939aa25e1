"""What operators see: admin screens and actions, /metrics, start-up seeding, concurrent uploaders."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import services as campaign_services
from conversions import bootstrap, services
from conversions.models import Conversion, ConversionAction, ServiceApiKey
from conversions.services import uploads
from platforms.registry import reset_platforms
from tests.conversions.conftest import META_PIXEL, google_conversion, meta_event
from tests.conversions.factories import ConversionActionFactory, ConversionFactory

GOOGLE_URL = "/api/v1/conversions/google"


@pytest.fixture
def admin_client_logged_in(client, staff_user):
    """Django's test client with the operator logged in to admin."""
    client.force_login(staff_user)
    return client


@pytest.fixture
def ledger(db) -> list[Conversion]:
    """Three Google conversions of one action: one failed, one uploaded, one pending."""
    action = ConversionActionFactory()
    return [
        ConversionFactory(action=action, failed=True),
        ConversionFactory(action=action, uploaded=True),
        ConversionFactory(action=action),
    ]


@pytest.mark.django_db
def test_ledger_admin_lists_and_filters(admin_client_logged_in, ledger):
    url = "/admin/conversions/conversion/"
    page = admin_client_logged_in.get(url)
    assert page.status_code == 200
    assert ledger[0].order_id in page.content.decode()
    failed = admin_client_logged_in.get(url, {"status__exact": "failed", "platform__exact": "google"})
    assert ledger[0].order_id in failed.content.decode()
    assert ledger[1].order_id not in failed.content.decode()
    detail = admin_client_logged_in.get(f"{url}{ledger[0].pk}/change/")
    assert detail.status_code == 200


@pytest.mark.django_db
def test_retry_failed_action_requeues_only_failed_rows(admin_client_logged_in, ledger):
    response = admin_client_logged_in.post(
        "/admin/conversions/conversion/",
        {"action": "retry_failed", "_selected_action": [c.pk for c in ledger]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 conversion(s) queued" in response.content.decode()
    retried = Conversion.objects.get(pk=ledger[0].pk)
    assert (retried.status, retried.attempts) == (Conversion.Status.PENDING, 0)
    assert Conversion.objects.get(pk=ledger[1].pk).status == Conversion.Status.UPLOADED


@pytest.mark.django_db
def test_csv_export_has_a_row_per_conversion_and_no_hashes(admin_client_logged_in, ledger):
    response = admin_client_logged_in.post(
        "/admin/conversions/conversion/",
        {"action": "export_csv", "_selected_action": [c.pk for c in ledger]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,platform,account")
    assert len(lines) == 4
    assert ledger[0].hashed_email not in text


@pytest.mark.django_db
def test_creating_a_service_key_in_admin_shows_it_once(admin_client_logged_in):
    response = admin_client_logged_in.post(
        "/admin/conversions/serviceapikey/add/", {"name": "crm sync", "scopes": ["conversions:write"]}, follow=True
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "copy it now" in text
    key = ServiceApiKey.objects.get(name="crm sync")
    assert key.scopes == ["conversions:write"]
    raw = text.split("Key for crm sync: ")[1].split(" ")[0]
    assert raw.startswith(key.prefix)
    assert services.service_api_key_authenticate(raw_key=raw) == key
    again = admin_client_logged_in.get(f"/admin/conversions/serviceapikey/{key.pk}/change/").content.decode()
    assert raw not in again


@pytest.mark.django_db
def test_conversion_action_admin(admin_client_logged_in, actions):
    page = admin_client_logged_in.get("/admin/conversions/conversionaction/")
    assert page.status_code == 200
    assert "880000001" in page.content.decode()


@pytest.mark.django_db
def test_metrics_expose_outcomes_success_rate_and_backlog(client, service_client, actions, sandbox):
    service_client.post(GOOGLE_URL, {"conversions": [google_conversion(), google_conversion()]}, format="json")
    services.conversions_upload_pending()
    service_client.post("/api/v1/conversions/meta", meta_event(), format="json")
    Conversion.objects.filter(platform="meta").update(created_at=timezone.now() - timedelta(minutes=10))
    text = client.get("/metrics").content.decode()
    assert 'ads_conversion_uploads_total{outcome="uploaded",platform="google"}' in text
    assert 'ads_conversion_upload_success_ratio{platform="google"} 1.0' in text
    age_line = next(
        line
        for line in text.splitlines()
        if line.startswith('ads_conversion_oldest_pending_age_seconds{platform="meta"}')
    )
    assert float(age_line.split()[-1]) >= 600
    assert 'ads_conversion_oldest_pending_age_seconds{platform="google"} 0.0' in text


@pytest.mark.django_db
def test_bootstrap_seeds_the_key_and_sandbox_actions_idempotently(settings, sandbox):
    settings.SERVICE_API_KEY = "a-long-configured-service-key-123456"
    settings.ADS_SANDBOX = True
    out = io.StringIO()
    bootstrap.run(stdout=out)
    bootstrap.run(stdout=out)
    assert ServiceApiKey.objects.count() == 1
    # The actions the emulators list for the discovered accounts, each seeded once.
    seeded = set(ConversionAction.objects.values_list("account__external_id", "external_id"))
    assert {("1234567890", "880000001"), ("2345678901", "880000012"), ("300000000000001", META_PIXEL)} <= seeded
    assert "Sandbox conversion actions: 0 created" in out.getvalue().splitlines()[-1]
    assert services.service_api_key_authenticate(raw_key=settings.SERVICE_API_KEY) is not None
    assert settings.SERVICE_API_KEY not in out.getvalue()
    # A changed key replaces the old one.
    settings.SERVICE_API_KEY = "another-configured-service-key-654321"
    bootstrap.run(stdout=out)
    assert services.service_api_key_authenticate(raw_key="a-long-configured-service-key-123456") is None
    assert services.service_api_key_authenticate(raw_key=settings.SERVICE_API_KEY) is not None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_take_disjoint_rows(actions):
    """Two uploaders at once: SKIP LOCKED hands each row to exactly one of them."""
    # The service takes validated shapes: a datetime, no value.
    items = [{**google_conversion(), "conversion_date_time": timezone.now()} for _ in range(40)]
    for item in items:
        del item["conversion_value"]
    services.conversions_ingest_google(items=items)
    action = actions["google_purchase"]
    barrier = threading.Barrier(2)
    claimed: list[list[int]] = []

    def claim() -> None:
        try:
            barrier.wait()
            rows = uploads._claim(
                platform="google", account_id=action.account_id, action_id=action.pk, limit=25, now=timezone.now()
            )
            claimed.append([r.pk for r in rows])
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = claimed
    assert not set(first) & set(second)
    assert len(first) + len(second) == 40


@pytest.mark.django_db
def test_bootstrap_seeds_the_reachable_platforms_actions_when_one_is_down(settings, sandbox):
    settings.ADS_SANDBOX = True
    campaign_services.account_discover()
    settings.ADS_SANDBOX_META_PORT = 1  # nothing listens there
    reset_platforms()

    created, present = bootstrap.seed_sandbox_actions()

    platforms_seeded = set(ConversionAction.objects.values_list("account__platform", flat=True))
    assert platforms_seeded == {"google"}
    assert (created, present) == (ConversionAction.objects.count(), 0)
