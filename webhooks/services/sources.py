"""Sources and their secrets: shared-secret and Standard Webhooks authentication, seeding."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks.models import (
    Destination,
    WebhookSource,
)
from webhooks.services.common import SIGNATURE_TOLERANCE_SECONDS, WebhookAuthError

logger = logging.getLogger(__name__)


# --- Source authentication ---------------------------------------------------------------


def _secret_key_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are ``whsec_`` + base64; the HMAC key is the decoded bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def standard_webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, computed by the standardwebhooks package.

    The key is handed over as bytes because the package would base64-decode any string, and our
    secrets may be plain text (see ``_secret_key_bytes``). Raises ``UnicodeDecodeError`` for a
    body that is not UTF-8: the package signs text.
    """
    signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(_secret_key_bytes(secret)).sign(msg_id, signed_at, body.decode("utf-8"))


SIGNING_SECRET_GRACE = timedelta(hours=24)


def destination_rotate_signing_secret(destination: Destination, *, grace: timedelta = SIGNING_SECRET_GRACE) -> str:
    """Give ``destination`` a new ``whsec_`` secret; the old one keeps signing for ``grace``. Returns the new one."""
    new_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    if destination.signing_secret:
        destination.previous_signing_secret = destination.signing_secret
        destination.previous_signing_secret_expires_at = timezone.now() + grace
    destination.signing_secret = new_secret
    destination.save(
        update_fields=["signing_secret", "previous_signing_secret", "previous_signing_secret_expires_at", "updated_at"]
    )
    return new_secret


_SOURCES_VERSION_KEY = "webhooks:sources-version"
# How long a process trusts its copy before asking the shared cache whether an operator
# changed a source: a revoked secret stops working everywhere within this time.
_SOURCES_RECHECK_SECONDS = 2.0


class _SourceCache:
    def __init__(self) -> None:
        self.version: str | None = None
        self.checked_at = 0.0
        self.by_kind: dict[str, list[WebhookSource]] | None = None
        self.lock = threading.Lock()


_source_cache = _SourceCache()


def webhook_sources_invalidate() -> None:
    """Call after any change to a source: every process reloads sources within seconds."""
    cache.set(_SOURCES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    with _source_cache.lock:
        _source_cache.by_kind = None


def shared_version(key: str) -> str | None:
    """The change token kept in the shared cache, or None while the cache (Redis) is unreachable:
    receipt and routing must keep working through a cache outage."""
    try:
        version: str | None = cache.get(key)
        if version is None:
            version = uuid.uuid4().hex
            if not cache.add(key, version, timeout=None):
                version = cache.get(key)
        return version
    except Exception:
        return None


def _active_sources(kind: str) -> list[WebhookSource]:
    """Active sources of a kind, from process memory: receipt costs no query for them."""
    now = time.monotonic()
    with _source_cache.lock:
        if _source_cache.by_kind is not None and now - _source_cache.checked_at < _SOURCES_RECHECK_SECONDS:
            return _source_cache.by_kind.get(kind, [])
    version = shared_version(_SOURCES_VERSION_KEY)
    with _source_cache.lock:
        # No version (the cache is unreachable): read the sources again, at most every few seconds.
        if _source_cache.by_kind is None or version is None or version != _source_cache.version:
            by_kind: dict[str, list[WebhookSource]] = {}
            for source in WebhookSource.objects.filter(is_active=True).order_by("pk"):
                by_kind.setdefault(source.kind, []).append(source)
            _source_cache.by_kind = by_kind
            _source_cache.version = version
        _source_cache.checked_at = now
        return _source_cache.by_kind.get(kind, [])


def _any_secret_matches(candidate: str, sources: Iterable[WebhookSource]) -> WebhookSource | None:
    candidate_bytes = candidate.encode()
    matched = None
    for source in sources:
        for secret in source.active_secrets:
            # Keep comparing after a match so the time taken does not depend on which secret matched.
            if hmac.compare_digest(candidate_bytes, secret.encode()) and matched is None:
                matched = source
    return matched


def webhook_source_authenticate_relay(
    *, headers: Mapping[str, str], raw_body: bytes, now: float | None = None
) -> WebhookSource:
    """The relay source whose secret the request proves: a signature if one is sent, else the header."""
    sources = _active_sources(WebhookSource.Kind.RELAY)
    signature_header = headers.get("webhook-signature", "")
    if signature_header:
        msg_id = headers.get("webhook-id", "")
        raw_timestamp = headers.get("webhook-timestamp", "")
        if not msg_id or not raw_timestamp.isdigit():
            raise WebhookAuthError("A signed request needs webhook-id and a unix webhook-timestamp.")
        timestamp = int(raw_timestamp)
        now = time.time() if now is None else now
        if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookAuthError("webhook-timestamp is more than 5 minutes away from our clock.")
        offered = [part.strip() for part in signature_header.split(" ") if part.strip().startswith("v1,")]
        try:
            raw_body.decode("utf-8")
        except UnicodeDecodeError:
            # Standard Webhooks signs text; bytes that are not UTF-8 cannot carry a valid signature.
            raise WebhookAuthError("The webhook-signature does not match any active secret.") from None
        matched = None
        for source in sources:
            for secret in source.active_secrets:
                expected = standard_webhook_signature(
                    secret=secret, msg_id=msg_id, timestamp=timestamp, body=raw_body
                ).encode()
                for signature in offered:
                    if hmac.compare_digest(expected, signature.encode()) and matched is None:
                        matched = source
        if matched is None:
            raise WebhookAuthError("The webhook-signature does not match any active secret.")
        return matched
    shared_secret = headers.get("x-webhook-secret", "")
    if not shared_secret:
        raise WebhookAuthError("Send the X-Webhook-Secret header or a Standard Webhooks signature.")
    matched = _any_secret_matches(shared_secret, sources)
    if matched is None:
        raise WebhookAuthError("The X-Webhook-Secret does not match any active source.")
    return matched


def webhook_source_authenticate_google(*, google_key: Any) -> WebhookSource:
    """The lead-form source whose key Google sent in the body (Google signs nothing else)."""
    if not isinstance(google_key, str) or not google_key:
        raise WebhookAuthError("The body has no google_key.")
    matched = _any_secret_matches(google_key, _active_sources(WebhookSource.Kind.GOOGLE_LEAD_FORM))
    if matched is None:
        raise WebhookAuthError("The google_key does not match any configured lead form key.")
    return matched


def webhook_source_seed_from_settings() -> list[WebhookSource]:
    """Create the default sources from WEBHOOK_SECRET and GOOGLE_LEAD_FORM_KEY when they are missing.

    Called at every start-up. The environment only seeds: once a source exists, admin owns its
    secret, so a secret rotated there is not put back to the environment's value by the next
    restart (an empty setting, too, leaves its source alone). Returns the sources it created.
    """
    seeded = []
    for name, kind, secret in (
        ("zapier", WebhookSource.Kind.RELAY, settings.WEBHOOK_SECRET),
        ("google-lead-form", WebhookSource.Kind.GOOGLE_LEAD_FORM, settings.GOOGLE_LEAD_FORM_KEY),
    ):
        if not secret:
            continue
        source, created = WebhookSource.objects.get_or_create(
            name=name, defaults={"kind": kind, "secret": secret, "is_active": True}
        )
        if created:
            logger.info("webhook source seeded from the environment", extra={"source": name})
            seeded.append(source)
        elif source.secret != secret:
            # Not an error: an operator rotated it in admin. Said once per start, without either value.
            logger.info("webhook source kept as admin set it; the environment's secret differs", extra={"source": name})
    if seeded:
        webhook_sources_invalidate()
    return seeded
