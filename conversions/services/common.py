"""Limits and settings the conversions services share."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from campaigns.models import Platform

# Per request, as the platforms allow (Google TOO_MANY_CONVERSIONS_IN_REQUEST; Meta's limit).
MAX_BATCH: dict[str, int] = {Platform.GOOGLE: 2000, Platform.META: 1000}
# Meta refuses a whole request when one event is older than this.
META_MAX_EVENT_AGE = timedelta(days=7)
# Expire a little early rather than send an event that turns 7 days old on the way.
META_EXPIRY_MARGIN = timedelta(minutes=1)
# Google Ads refuses click conversions more than 90 days old (the longest click-through window).
GOOGLE_MAX_CONVERSION_AGE = timedelta(days=90)
# Clocks of senders drift; an event a few seconds "in the future" is not refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
META_ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
CONSENT_VALUES = {"granted": "GRANTED", "denied": "DENIED"}
SERVICE_KEY_PREFIX = "ibvi_sk_"
UPLOAD_KICK_CACHE_KEY = "conversions:upload-requested"
UPLOAD_KICK_DEBOUNCE_SECONDS = 5
# last_used_at is a hint for operators, not an audit log: one write a minute per key at most.
SERVICE_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def upload_max_attempts() -> int:
    return int(getattr(settings, "CONVERSIONS_UPLOAD_MAX_ATTEMPTS", 8))


def upload_lease_seconds() -> int:
    return int(getattr(settings, "CONVERSIONS_UPLOAD_LEASE_SECONDS", 600))


def retry_base_seconds() -> float:
    return float(getattr(settings, "CONVERSIONS_RETRY_BASE_SECONDS", 30))
