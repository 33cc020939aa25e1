"""Thin Celery tasks: load by id, call one service, decide on a retry."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from adsplatform.resilience import platform_task_retry_delay
from campaigns import backfill, enqueue, services
from campaigns import bootstrap as sandbox_bootstrap
from campaigns.models import SyncRun
from platforms.base import TransientError

logger = logging.getLogger(__name__)

MAX_SYNC_RETRIES = 6


def _retry_delay(exc: Exception, retries: int) -> float:
    return platform_task_retry_delay(exc, retries, cap=settings.TASK_MAX_RETRY_DELAY_SECONDS)


@shared_task(bind=True, name=enqueue.SYNC_ACCOUNT, acks_late=True, max_retries=MAX_SYNC_RETRIES)
def sync_account(self, sync_run_id: int) -> None:
    run = SyncRun.objects.select_related("account").filter(pk=sync_run_id).first()
    if run is None or run.status not in (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING):
        return  # already done: a redelivered message changes nothing
    try:
        services.campaign_sync(run=run)
    except services.SyncAlreadyRunning:
        return
    except (TransientError, OperationalError, InterfaceError) as exc:
        if self.request.retries >= self.max_retries:
            services.sync_run_give_up(run=run)
            return
        delay = _retry_delay(exc, self.request.retries)
        services.sync_run_retry_at(run=run, delay_seconds=delay)
        raise self.retry(exc=exc, countdown=delay) from exc
    except Exception:
        # Recorded on the run (auth → account flagged); retrying cannot help.
        logger.exception("sync failed for good", extra={"sync_run_id": sync_run_id})


@shared_task(name="campaigns.sync_due_accounts")
def sync_due_accounts() -> int:
    """Beat, every minute: settle abandoned runs, re-send queued ones whose message was lost,
    and start the syncs that are due."""
    services.sync_runs_settle_abandoned()
    for run in services.stale_queued_runs():
        sync_account.delay(run.pk)
    accounts = services.due_accounts()
    for account in accounts:
        services.sync_run_create(account=account, trigger=SyncRun.Trigger.SCHEDULED)
    return len(accounts)


@shared_task(name="campaigns.backfill_accounts")
def backfill_accounts() -> int:
    """Beat, every minute: queue the next first-backfill chunk of the accounts still short of it."""
    return backfill.backfill_enqueue_due()


@shared_task(name="campaigns.discover_sandbox_accounts")
def discover_sandbox_accounts() -> int:
    """Beat, every 2 minutes: with the sandbox on, discover platforms that have no account yet."""
    return sandbox_bootstrap.discover_missing_sandbox_accounts()
