"""Service API keys: created with their scopes, stored as hashes, checked on every machine post."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from conversions.models import ServiceApiKey, default_service_scopes
from conversions.services.common import SERVICE_KEY_PREFIX, SERVICE_KEY_TOUCH_INTERVAL


def service_api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _key_prefix(raw_key: str) -> str:
    """Enough to recognise a key, never enough to matter: a quarter of a short key at most."""
    if raw_key.startswith(SERVICE_KEY_PREFIX):
        return raw_key[: len(SERVICE_KEY_PREFIX) + 4]
    return raw_key[: min(6, len(raw_key) // 4)]


def service_api_key_create(
    *, name: str, raw_key: str = "", scopes: list[str] | None = None
) -> tuple[ServiceApiKey, str]:
    """A new key (by default: post conversions and read the actions); the raw key is returned once
    and never stored."""
    raw_key = raw_key or SERVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ServiceApiKey.objects.create(
        name=name,
        prefix=_key_prefix(raw_key),
        key_hash=service_api_key_hash(raw_key),
        scopes=list(scopes) if scopes is not None else default_service_scopes(),
    )
    return key, raw_key


def service_api_key_ensure(*, name: str, raw_key: str) -> tuple[ServiceApiKey, bool]:
    """The key with this value, created under ``name`` if missing (start-up seeding; idempotent)."""
    existing = ServiceApiKey.objects.filter(key_hash=service_api_key_hash(raw_key)).first()
    if existing is not None:
        return existing, False
    if ServiceApiKey.objects.filter(name=name).exists():
        # The configured key changed: the old one under this name stops working.
        ServiceApiKey.objects.filter(name=name).update(
            name=f"{name} (replaced {timezone.now():%Y-%m-%d %H:%M})", is_active=False
        )
    key, _ = service_api_key_create(name=name, raw_key=raw_key)
    return key, True


def service_api_key_authenticate(*, raw_key: str) -> ServiceApiKey | None:
    if not raw_key:
        return None
    key = ServiceApiKey.objects.filter(key_hash=service_api_key_hash(raw_key), is_active=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > SERVICE_KEY_TOUCH_INTERVAL:
        ServiceApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
