"""The environment seeds a webhook source once; after that admin owns its secret, restarts included."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from tests.webhooks.conftest import flat_payload, post_json
from webhooks.models import WebhookSource

ZAPIER = "/api/v1/webhooks/zapier"
SEEDED = "seeded-from-the-environment-0123"
ROTATED = "rotated-in-admin-4567890123456"

pytestmark = pytest.mark.django_db


@pytest.fixture
def restart(settings, monkeypatch):
    """What a restart runs (`manage.py bootstrap`), with WEBHOOK_SECRET set in the environment."""
    settings.WEBHOOK_SECRET = SEEDED
    settings.GOOGLE_LEAD_FORM_KEY = ""
    # The operator exists with a known password, so bootstrap writes no generated one to disk.
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "operator")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "not-used-by-these-tests")

    def run() -> str:
        out = io.StringIO()
        call_command("bootstrap", "--no-migrate", stdout=out)
        return out.getvalue()

    return run


@pytest.fixture
def admin_browser(staff_user) -> Client:
    """The operator, logged in to Django admin."""
    client = Client()
    client.force_login(staff_user)
    return client


def test_a_secret_rotated_in_admin_survives_a_restart(api_client, admin_browser, restart):
    assert "Webhook sources created from the environment: zapier" in restart()
    source = WebhookSource.objects.get(name="zapier")
    assert source.secret == SEEDED
    assert (
        post_json(api_client, ZAPIER, flat_payload(lead_id="before"), **{"X-Webhook-Secret": SEEDED}).status_code == 202
    )

    page = admin_browser.get(f"/admin/webhooks/webhooksource/{source.pk}/change/")
    # The operator is told who owns the secret before changing it.
    assert "only create the zapier / google-lead-form source when it does not exist yet" in page.content.decode()
    response = admin_browser.post(
        f"/admin/webhooks/webhooksource/{source.pk}/change/",
        {
            "name": "zapier",
            "kind": WebhookSource.Kind.RELAY,
            "secret": ROTATED,
            "previous_secret": "",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content

    # The restart seeds nothing and says so; the environment's value does not come back.
    assert "already exist" in restart()
    assert WebhookSource.objects.get(name="zapier").secret == ROTATED

    accepted = post_json(api_client, ZAPIER, flat_payload(lead_id="after"), **{"X-Webhook-Secret": ROTATED})
    assert accepted.status_code == 202
    refused = post_json(api_client, ZAPIER, flat_payload(lead_id="old-secret"), **{"X-Webhook-Secret": SEEDED})
    assert refused.status_code == 401


def test_a_deleted_source_is_seeded_again(api_client, restart):
    restart()
    WebhookSource.objects.filter(name="zapier").update(secret=ROTATED)
    WebhookSource.objects.filter(name="zapier").delete()
    restart()
    assert WebhookSource.objects.get(name="zapier").secret == SEEDED
    assert post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": SEEDED}).status_code == 202


def test_an_empty_environment_seeds_nothing(restart, settings):
    settings.WEBHOOK_SECRET = ""
    assert "No WEBHOOK_SECRET / GOOGLE_LEAD_FORM_KEY set" in restart()
    assert not WebhookSource.objects.exists()
