"""Secrets at rest: the database holds Fernet tokens, the code sees the values, keys rotate
without downtime, and neither admin nor the API shows a secret back."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from adsplatform import secret_fields
from webhooks.models import Destination, WebhookSource

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def stored(model, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_values_round_trip_and_keys_rotate_newest_first(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    token = secret_fields.encrypt("whsec_abc")
    assert token.startswith("fernet:") and "whsec_abc" not in token
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert secret_fields.decrypt(token) == "whsec_abc"  # the old key still reads
    rotated = secret_fields.rotate(token)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert secret_fields.decrypt(rotated) == "whsec_abc"
    with pytest.raises(ImproperlyConfigured, match="rotate_field_encryption"):
        secret_fields.decrypt(token)  # the old key is gone and this one was never rotated


def test_a_value_written_before_encryption_reads_as_is():
    assert secret_fields.decrypt("plain-secret") == "plain-secret"


@pytest.mark.django_db
def test_the_database_holds_tokens_and_the_rotation_command_rewrites_them(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    source = WebhookSource.objects.create(name="zapier", secret="relay-secret-0123456789")
    destination = Destination.objects.create(
        name="CRM", kind="crm", url="https://crm.example.com/hooks/leads", signing_secret="whsec_c2VjcmV0"
    )
    raw_secret = stored(WebhookSource, source.pk, "secret")
    assert raw_secret.startswith("fernet:") and "relay-secret" not in raw_secret
    assert "whsec_" not in stored(Destination, destination.pk, "signing_secret")
    assert "crm.example.com" not in stored(Destination, destination.pk, "url")
    assert WebhookSource.objects.get().secret == "relay-secret-0123456789"
    assert stored(WebhookSource, source.pk, "previous_secret") == ""  # a blank stays blank

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_field_encryption", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert WebhookSource.objects.get().secret == "relay-secret-0123456789"
    assert Destination.objects.get().url == "https://crm.example.com/hooks/leads"
    assert stored(WebhookSource, source.pk, "secret") != raw_secret


@pytest.mark.django_db
def test_admin_never_shows_a_secret_back(client, staff_user):
    source = WebhookSource.objects.create(name="zapier", secret="relay-secret-0123456789")
    destination = Destination.objects.create(
        name="Slack", kind="slack", url="https://hooks.slack.example/services/T000/B000/XXXX"
    )
    client.force_login(staff_user)
    for url in (
        f"/admin/webhooks/webhooksource/{source.pk}/change/",
        "/admin/webhooks/webhooksource/",
        f"/admin/webhooks/destination/{destination.pk}/change/",
        "/admin/webhooks/destination/",
    ):
        page = client.get(url).content.decode()
        assert "relay-secret-0123456789" not in page and "B000/XXXX" not in page, url
