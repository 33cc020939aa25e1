"""Tunables of budgets, the optimizer and alerts, read from Django settings with defaults.

Read at call time (not import time) so tests and operators can change them without a restart
of the code path that uses them.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

DEFAULTS: dict[str, object] = {
    # A manual change beyond this share of the current budget needs an explicit confirmation.
    "BUDGET_LARGE_CHANGE_RATIO": Decimal("0.50"),
    # Optimizer guardrails.
    "OPTIMIZER_MAX_DAILY_CHANGE": Decimal("0.20"),
    "OPTIMIZER_MIN_DAILY_BUDGET_MICROS": 1_000_000,
    "OPTIMIZER_MIN_CONVERSIONS": Decimal("10"),
    "OPTIMIZER_LOOKBACK_DAYS": 14,
    # Alerts.
    "ALERT_DAILY_OVERSPEND_RATIO": Decimal("1.10"),
    "ALERT_API_ERROR_RATE": 0.05,
    "ALERT_API_WINDOW_MINUTES": 15,
    "ALERT_API_MIN_CALLS": 10,
    "ALERT_WEBHOOK_DELAY_SECONDS": 300,
    "ALERT_EMAIL_RECIPIENTS": [],
    "ALERT_SLACK_WEBHOOK_URL": "",
    # Platform call records older than this are deleted by the alert evaluation.
    "PLATFORM_CALL_RETENTION_HOURS": 24,
}


def setting(name: str):
    """The project setting ``name``, or this app's default for it."""
    return getattr(settings, name, DEFAULTS[name])
