"""Thin Celery tasks: take ids, call one service, decide retry. All are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from adsplatform.resilience import backoff_delay
from webhooks import services

# Lead work is short (a message holds at most 50 events; a delivery's HTTP call times out after
# LEAD_DELIVERY_TIMEOUT_SECONDS), so its hard time limits are minutes, not the default half hour:
# a task that hangs (on a socket a broker or database outage left dead) is killed by the pool
# and its slot freed, and the backlog sweep offers its events and deliveries again.
# The soft limit is the hard one (the default soft limit is longer, which Celery refuses): no
# handler is interrupted half-way, the kill is the guard, and the work is idempotent.
_PROCESS_LIMITS = {"time_limit": 120, "soft_time_limit": 120}
_DELIVERY_LIMIT = max(60, 3 * settings.LEAD_DELIVERY_TIMEOUT_SECONDS)
_DELIVERY_LIMITS = {"time_limit": _DELIVERY_LIMIT, "soft_time_limit": _DELIVERY_LIMIT}

# Far above services.MAX_DELIVERY_ATTEMPTS: the delivery row's attempt count is the real limit,
# because the sweeper may start a fresh task for a delivery whose first task was lost.
_DELIVERY_TASK_MAX_RETRIES = 20


@shared_task(bind=True, name=services.PROCESS_EVENTS_TASK, max_retries=8, **_PROCESS_LIMITS)
def process_webhook_events(self, event_ids: list[int]) -> None:
    retry_ids = services.webhook_events_process(event_ids=event_ids)
    if retry_ids and self.request.retries < self.max_retries:
        # Only the events the database refused go round again; past the last retry the sweeper has them.
        countdown = backoff_delay(self.request.retries + 1, base=5, cap=settings.TASK_MAX_RETRY_DELAY_SECONDS)
        raise self.retry(args=[retry_ids], countdown=countdown)


# Celery's own retry options fit here (nothing to honour but the count): its backoff, not ours.
@shared_task(
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    retry_backoff_max=settings.TASK_MAX_RETRY_DELAY_SECONDS,
    max_retries=8,
    **_PROCESS_LIMITS,
)
def process_webhook_event(event_id: int) -> None:
    # Kept for messages an earlier release queued (one event per message); new ones use the batch task.
    services.webhook_event_process(event_id=event_id)


@shared_task(bind=True, name=services.DELIVER_LEAD_TASK, max_retries=_DELIVERY_TASK_MAX_RETRIES, **_DELIVERY_LIMITS)
def deliver_lead(self, delivery_id: int) -> None:
    try:
        services.lead_delivery_send(delivery_id=delivery_id, max_delay_seconds=settings.TASK_MAX_RETRY_DELAY_SECONDS)
    except services.DeliveryTemporaryError as exc:
        if self.request.retries >= self.max_retries:
            services.lead_delivery_give_up(delivery_id=delivery_id, reason=f"Gave up after retries: {exc}")
            return
        raise self.retry(countdown=exc.retry_in_seconds, exc=exc) from None


@shared_task
def sweep_webhook_backlog() -> None:
    services.webhook_backlog_sweep()


@shared_task
def send_lead_digests() -> None:
    # No retry: a digest that fails leaves its leads waiting, and the next beat run is the retry.
    services.lead_digests_send()
