"""Thin Celery tasks: load by id, call one service, decide on a retry."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings

from adsplatform.resilience import platform_task_retry_delay
from campaigns.models import AdAccount
from optimization import alerts, changes, enqueue, services
from optimization.models import OptimizationRun
from optimization.selectors import stale_pending_runs
from platforms.base import TransientError

logger = logging.getLogger(__name__)

MAX_PUSH_RETRIES = 8


def retry_delay(exc: TransientError, retries: int) -> float:
    """Quota errors wait what the platform asked; others back off exponentially. Never above the cap."""
    return platform_task_retry_delay(exc, retries, cap=settings.TASK_MAX_RETRY_DELAY_SECONDS)


@shared_task(bind=True, name=enqueue.PUSH_BUDGET_CHANGE, acks_late=True, max_retries=MAX_PUSH_RETRIES)
def push_budget_change(self, run_id: int) -> None:
    run = OptimizationRun.objects.filter(pk=run_id).first()
    if run is None or run.status != OptimizationRun.Status.PENDING:
        return  # already decided: a redelivered message changes nothing
    try:
        changes.change_push(run=run)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            changes.change_push_give_up(run=run, error=exc)
            return
        delay = retry_delay(exc, self.request.retries)
        changes.change_push_retry_at(run=run, delay_seconds=delay, error=exc)
        raise self.retry(exc=exc, countdown=delay) from exc


@shared_task(name="optimization.sweep_budget_pushes")
def sweep_budget_pushes() -> int:
    """Beat: re-send pending pushes whose message was lost (a broker outage) or whose retry is overdue."""
    runs = stale_pending_runs()
    for run in runs:
        push_budget_change.delay(run.pk)
    return len(runs)


@shared_task(name="optimization.run_optimizer")
def run_optimizer() -> int:
    """Beat, daily: proposals for every account with the optimizer enabled."""
    return services.optimizer_run_all()


@shared_task(name="optimization.evaluate_alerts")
def evaluate_alerts() -> int:
    """Beat, every minute: the fallback evaluation, for while no alert monitor runs.

    The monitor (``manage.py alert_monitor``) evaluates every ~20 s from outside the worker; its
    heartbeat fresh, this task does nothing. Stale or missing, this task evaluates (and opens
    "alert monitor not running" when the monitor was seen before), under the same lock.
    """
    if not alerts.worker_evaluation_due():
        return 0
    with alerts.evaluation_lock() as held:
        if not held:
            return 0
        result = alerts.alerts_evaluate()
    return len(result.opened) + len(result.resolved)


@shared_task(name=enqueue.WORKER_CANARY, ignore_result=True)
def worker_canary(sent_at: str) -> None:
    """Queued by the alert monitor; running it proves a worker takes tasks from the queue."""
    alerts.worker_canary_ran(sent_at=datetime.fromisoformat(sent_at), worker=worker_canary.request.hostname or "")


@shared_task(name=enqueue.EVALUATE_ACCOUNT_ALERTS)
def evaluate_account_alerts(account_id: int) -> None:
    """After a sync: the budget alerts of that account, on fresh numbers."""
    account = AdAccount.objects.filter(pk=account_id).first()
    if account is None:
        return
    alerts.budget_alerts_evaluate(accounts=[account])
    alerts.alerts_notify_pending()
