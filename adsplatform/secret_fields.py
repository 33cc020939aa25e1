"""Model fields whose values are encrypted at rest (webhook secrets, lead form keys, CRM signing
secrets, Slack URLs): the database and its backups hold only Fernet tokens.

A leaf like adsplatform/query_params.py: it imports only Django and ``cryptography``, so every app
may use it without importing the project's wiring.

Keys come from ``FIELD_ENCRYPTION_KEYS`` (Fernet keys, newest first): values are written with the
newest and read with any, so a key is rotated without downtime — put the new key first, deploy,
run ``manage.py rotate_field_encryption`` (rewrites every value with it), then drop the old one.
Unset (``make run``), a key derived from ``SECRET_KEY`` is used; ``check --deploy`` asks for real
keys, since rotating SECRET_KEY would otherwise make the secrets unreadable.

Written here rather than taken from django-fernet-encrypted-fields (0.4): that one derives its
keys from SECRET_KEY, stores a blank value as NULL (breaking NOT NULL columns) and marks "already
decrypted" on the shared field object, which is not safe with gunicorn's threads.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models

# Stored values start with this; anything else is a value written before encryption (read as is
# until the migration or the rotation command rewrites it).
PREFIX = "fernet:"


def configured_keys() -> list[str]:
    keys = [key.strip() for key in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if key.strip()]
    if keys:
        return keys
    derived = hashlib.sha256(b"ads-platform field encryption|" + settings.SECRET_KEY.encode()).digest()
    return [base64.urlsafe_b64encode(derived).decode()]


@cache
def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in configured_keys()])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key; make one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        ) from exc


def _forget_keys(*, setting: str, **_: Any) -> None:
    if setting in ("FIELD_ENCRYPTION_KEYS", "SECRET_KEY"):
        _fernet.cache_clear()


setting_changed.connect(_forget_keys)


def encrypt(value: str) -> str:
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet().decrypt(stored.removeprefix(PREFIX).encode()).decode()
    except InvalidToken:
        # Never guess: a secret no key opens means the keys were changed without rotating.
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any FIELD_ENCRYPTION_KEYS key: keep the old key "
            "(after the new one) until `manage.py rotate_field_encryption` has run."
        ) from None


def rotate(stored: str) -> str:
    """The value re-encrypted with the newest key (plain values encrypted)."""
    if not stored.startswith(PREFIX):
        return encrypt(stored) if stored else stored
    return PREFIX + _fernet().rotate(stored.removeprefix(PREFIX).encode()).decode()


class EncryptedCharField(models.CharField):
    """A CharField kept encrypted in a text column. ``max_length`` limits the value, not the token;
    a blank value stays blank (nothing to hide, and NOT NULL columns keep working)."""

    def get_internal_type(self) -> str:
        return "TextField"

    def db_type(self, connection) -> str | None:
        return models.TextField().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return decrypt(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))


class EncryptedURLField(EncryptedCharField):
    """A URL that is a credential (a Slack incoming webhook): validated as a URL, stored encrypted."""

    default_validators = models.URLField.default_validators

    def formfield(self, **kwargs: Any):
        from django import forms

        return super().formfield(**{"form_class": forms.URLField, **kwargs})
