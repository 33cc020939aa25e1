"""What every part of the webhook services shares: errors, constants, settings with defaults."""

from __future__ import annotations

from typing import Any

from django.conf import settings

SIGNATURE_TOLERANCE_SECONDS = 5 * 60
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Headers kept with each event for forensics; the shared-secret header is never among them.
STORED_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-request-id",
    "x-forwarded-for",
)


# --- Errors ------------------------------------------------------------------------------


class WebhookAuthError(Exception):
    """The sender did not prove it knows a source's secret (401; nothing is stored)."""


class LeadPayloadError(ValueError):
    """The event body cannot become a lead; the message names fields, never values."""


class DeliveryTemporaryError(Exception):
    """The destination should be tried again later (timeout, connection error, 5xx, 429)."""

    def __init__(self, message: str, *, retry_in_seconds: float, response_code: int | None = None) -> None:
        super().__init__(message)
        self.retry_in_seconds = retry_in_seconds
        self.response_code = response_code


class DeliveryPermanentError(Exception):
    def __init__(self, message: str, *, response_code: int | None = None) -> None:
        super().__init__(message)
        self.response_code = response_code


# --- Settings with defaults (so the app works before anyone adds them) ---------------------


def setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def delivery_timeout() -> tuple[float, float]:
    # (connect, read): a slow CRM must not hold a worker longer than this.
    return (3.05, float(setting("LEAD_DELIVERY_TIMEOUT_SECONDS", 10)))
