"""The Celery app, its beat schedule, and the request id carried into tasks."""

from __future__ import annotations

import os

from celery import Celery, signals
from celery.schedules import crontab

from adsplatform import kombu_fixes, worker_liveness
from adsplatform import logging as ads_logging

# A worker that loses Redis while waiting for work must reconnect, not exit (see kombu_fixes).
kombu_fixes.install()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")

app = Celery("adsplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A worker proves it consumes (a heartbeat from its consumer loop) and exits when it stops: see
# adsplatform/worker_liveness.py and `manage.py worker_alive`.
worker_liveness.install(app)

# Kept for callers written against it; the value lives in settings.TASK_MAX_RETRY_DELAY_SECONDS.
MAX_RETRY_DELAY_SECONDS = 15 * 60

# The schedule is the product's, not a deployment detail. Periodic jobs expire when
# not picked up within their period, so a stopped worker does not come back to a
# backlog of identical sweeps.
BEAT_SCHEDULE = {
    "campaigns-sync-due-accounts": {
        "task": "campaigns.sync_due_accounts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # First backfills of new accounts, a chunk at a time at a low priority (campaigns/backfill.py).
    "campaigns-backfill-accounts": {
        "task": "campaigns.backfill_accounts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # With the sandbox on: its accounts, when the start-up discovery could not reach it.
    "campaigns-discover-sandbox-accounts": {
        "task": "campaigns.discover_sandbox_accounts",
        "schedule": 120.0,
        "options": {"expires": 115},
    },
    # Every connection's credentials; Meta user tokens exchanged again before they expire.
    "connections-check": {
        "task": "connections.check_connections",
        "schedule": 900.0,
        "options": {"expires": 890},
    },
    "conversions-upload-pending": {
        "task": "conversions.upload_pending",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "optimization-evaluate-alerts": {
        "task": "optimization.evaluate_alerts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "optimization-sweep-budget-pushes": {
        "task": "optimization.sweep_budget_pushes",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    # Daily proposals, early morning UTC; each account's own dates are used inside.
    "optimization-run-optimizer": {
        "task": "optimization.run_optimizer",
        "schedule": crontab(hour=6, minute=0),
    },
    "webhooks-sweep-backlog": {
        "task": "webhooks.tasks.sweep_webhook_backlog",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Low-priority leads reach email and Slack in one digest per destination, every
    # LEAD_DIGEST_INTERVAL_SECONDS: the period is filled in by _schedule_from_settings below.
    "webhooks-send-lead-digests": {
        "task": "webhooks.tasks.send_lead_digests",
    },
}
app.conf.beat_schedule = BEAT_SCHEDULE


@app.on_after_configure.connect
def _schedule_from_settings(sender: Celery, source, **_: object) -> None:
    """Periods that are Django settings, read once the app loads its configuration.

    Importing this module must not load Django's settings (the environment may not be final
    yet); the app loads its configuration, and with it Django's settings, on first use.
    """
    from django.conf import settings

    interval = float(settings.LEAD_DIGEST_INTERVAL_SECONDS)
    source.beat_schedule["webhooks-send-lead-digests"].update(
        schedule=interval, options={"expires": max(1.0, interval * 0.9)}
    )


__all__ = ("BEAT_SCHEDULE", "MAX_RETRY_DELAY_SECONDS", "app", "crontab")


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict | None = None, **_: object) -> None:
    request_id = ads_logging.current_request_id()
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


@signals.task_prerun.connect
def _adopt_request_id(task=None, **_: object) -> None:
    if task is None:
        return
    # A worker merges custom message headers into the request; apply() keeps them apart.
    request_id = getattr(task.request, "request_id", None) or (task.request.headers or {}).get("request_id")
    ads_logging.set_request_id(request_id or f"task-{task.request.id}")


@signals.task_postrun.connect
def _forget_request_id(**_: object) -> None:
    ads_logging.set_request_id(None)
