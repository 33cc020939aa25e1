"""Alerts: evaluate the conditions, open / refresh / resolve one alert per condition, and send
the notifications still owed (email, Slack-compatible webhook), one channel at a time.

Kept apart from the budget workflows in ``optimization.services`` so that the alert monitor
(``manage.py alert_monitor``), which runs outside the worker it watches, imports only what
alerting needs. Why a process of its own: every check used to run as a beat-scheduled Celery
task, so a stopped or stuck worker silenced the very alert that should say so. The monitor reads
the database directly, sends notifications itself, and watches the other processes from there:

* workers: it queues a small *canary* task now and then; a worker that runs it clears it. A
  canary waiting longer than ``ALERT_WORKER_STALE_SECONDS`` means no worker takes tasks (none
  running, all stuck, or the queue unreachable), whichever machine they are on. The worker's own
  liveness heartbeat (adsplatform/worker_liveness.py) is a file on the worker's machine and
  proves one worker polls its own channel; the canary proves the shared task queue is served.
* beat: its scheduler writes a heartbeat row every few seconds (optimization/beat.py); one older
  than ``ALERT_BEAT_STALE_SECONDS`` means no periodic job (syncs, uploads, sweeps) is queued.
* itself: it writes its own heartbeat each cycle; the worker-side evaluation (the beat task kept
  as a fallback) alerts when that goes stale, and skips its own evaluation while it is fresh.

Two monitors may run (a second Fly machine, a restart overlapping): each cycle runs under a
PostgreSQL advisory lock, so only one evaluates and sends at a time; each notification is also
claimed in its own row before it is sent, so even a lock lost mid-cycle sends nothing twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import get_connection, send_mail
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from adsplatform.resilience import backoff_delay
from campaigns.models import AdAccount
from campaigns.services import account_today
from optimization import enqueue, selectors
from optimization.changes import PLATFORM_NAMES
from optimization.conf import setting
from optimization.models import Alert, AlertNotification, AlertSettings, ProcessHeartbeat
from optimization.services import platform_calls_prune
from platforms.base import format_money
from webhooks import selectors as webhook_selectors

logger = logging.getLogger(__name__)

# Tunables of the monitor, beside the thresholds of optimization/conf.py: a Django setting of the
# name wins, then an environment variable of the name, then the default.
MONITOR_DEFAULTS: dict[str, float] = {
    # Every this often the monitor evaluates and sends: a condition is seen at most this long
    # after it starts (plus the evaluation itself), well within a minute.
    "ALERT_MONITOR_INTERVAL_SECONDS": 20,
    # A canary no worker has run for this long opens "workers not taking tasks".
    "ALERT_WORKER_STALE_SECONDS": 120,
    # A new canary at most this often once the last one ran.
    "ALERT_CANARY_INTERVAL_SECONDS": 30,
    # A canary still waiting after this long is queued again (and expires then), in case the
    # broker lost it (a Redis restart without persistence).
    "ALERT_CANARY_RESEND_SECONDS": 600,
    # Beat's heartbeat older than this opens "beat not running" (beat writes it every 15 s).
    "ALERT_BEAT_STALE_SECONDS": 180,
    # The monitor's own heartbeat older than this opens "alert monitor not running" (worker side).
    "ALERT_MONITOR_STALE_SECONDS": 120,
    # A notification that failed is tried again after 30 s, doubling up to 15 minutes.
    "ALERT_NOTIFY_RETRY_SECONDS": 30,
    "ALERT_NOTIFY_RETRY_MAX_SECONDS": 900,
    # Seconds a send may take (SMTP and Slack alike): a hung destination must not stall the monitor.
    "ALERT_NOTIFY_TIMEOUT_SECONDS": 10,
}

# A notification claimed ("sending") this long ago by a process that then died is taken back.
SENDING_LEASE = timedelta(minutes=5)

# pg_try_advisory_lock key of the alert evaluation: the bytes of "alerts" as an integer.
EVALUATION_LOCK_KEY = int.from_bytes(b"alerts", "big")


def tunable(name: str) -> float:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or MONITOR_DEFAULTS[name]
    try:
        return float(value)
    except (TypeError, ValueError):
        logger.warning("ignoring a %s that is not a number", name)
        return float(MONITOR_DEFAULTS[name])


@dataclass(frozen=True)
class AlertCondition:
    """A condition that holds right now; the evaluation opens or refreshes its alert."""

    kind: str
    subject: str
    subject_label: str
    severity: str
    value: float
    threshold: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    account_id: int | None = None


@dataclass
class AlertChanges:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    notified: int = 0

    def add(self, other: AlertChanges) -> None:
        self.opened += other.opened
        self.resolved += other.resolved


def alerts_evaluate(*, now: datetime | None = None) -> AlertChanges:
    """Evaluate every alert, open and resolve, then send the notifications still owed.

    One check failing (a query error) is logged and does not keep the others from running: the
    monitor must still say "webhooks are late" when, say, the budget query breaks.
    """
    now = now or timezone.now()
    changes = AlertChanges()
    for evaluate in (
        budget_alerts_evaluate,
        api_failure_alerts_evaluate,
        webhook_delay_alerts_evaluate,
        process_alerts_evaluate,
    ):
        try:
            changes.add(evaluate(now=now))
        except Exception:
            logger.exception("alert check failed; the others still ran", extra={"check": evaluate.__name__})
    platform_calls_prune(now=now)
    changes.notified = alerts_notify_pending(now=now)
    return changes


# What each platform allows itself on one day, so an operator reads the alert against the right
# rule: Google's budgets are monthly in effect (up to 2× a day, never more than 30.4× in a month);
# Meta may spend up to 75% over a daily budget on a day, never more than 7× it in a week.
DAILY_VARIANCE_NOTE = {
    "google": (
        "Google may spend up to 2× a daily budget on one day while pacing the month; the monthly "
        "pacing alert says whether the month is over budget."
    ),
    "meta": (
        "Meta may spend up to 75% over a daily budget on one day and evens it out within the week "
        "(at most 7× the daily budget); the monthly pacing alert says whether the month is over budget."
    ),
}


def budget_alerts_evaluate(*, accounts: Iterable[AdAccount] | None = None, now: datetime | None = None) -> AlertChanges:
    """Today's spend above 110% of the daily budget, and month-to-date spend above the days
    elapsed × the daily budget (Google may spend up to twice a daily budget on one day while
    it paces the month, so the monthly view is the one that proves an overspend)."""
    now = now or timezone.now()
    scope_all = accounts is None
    accounts = list(AdAccount.objects.filter(is_active=True) if accounts is None else accounts)
    daily_ratio = float(setting("ALERT_DAILY_OVERSPEND_RATIO"))
    firing: list[AlertCondition] = []
    for account in accounts:
        today = account_today(account)
        for row in selectors.campaign_spend_for_alerts(account=account, today=today):
            currency = row.currency_code
            budget = row.daily_budget_micros
            daily = row.spend_today_micros / budget
            if daily > daily_ratio:
                firing.append(
                    AlertCondition(
                        kind=Alert.Kind.BUDGET_OVERSPEND,
                        subject=f"campaign:{row.campaign_id}",
                        subject_label=row.name,
                        severity=Alert.Severity.CRITICAL if daily > 2 else Alert.Severity.WARNING,
                        value=round(daily, 4),
                        threshold=daily_ratio,
                        message=(
                            f"Daily overspend: “{row.name}” spent {format_money(row.spend_today_micros, currency)} "
                            f"today ({today}, {account.time_zone}), {daily:.0%} of its "
                            f"{format_money(budget, currency)} daily budget (alert above {daily_ratio:.0%}). "
                            f"{DAILY_VARIANCE_NOTE.get(account.platform, '')}"
                        ),
                        details={"spend_today_micros": row.spend_today_micros, "daily_budget_micros": budget},
                        account_id=account.pk,
                    )
                )
            days = today.day
            allowed = days * budget
            # On the first of the month the month to date is today's spend alone: a pacing alert
            # would restate the daily one (at 100% where the daily rule, knowing Google may spend
            # 2× on one day, waits for 110%) and page the operator twice for the same money. The
            # month is judged from day 2, once it holds more than today.
            if days > 1 and row.spend_month_micros > allowed:
                firing.append(
                    AlertCondition(
                        kind=Alert.Kind.PACING_OVERSPEND,
                        subject=f"campaign:{row.campaign_id}",
                        subject_label=row.name,
                        severity=Alert.Severity.WARNING,
                        value=round(row.spend_month_micros / allowed, 4),
                        threshold=1.0,
                        message=(
                            f"Monthly pacing overspend: “{row.name}” spent "
                            f"{format_money(row.spend_month_micros, currency)} this month through {today}, above "
                            f"{days} days × {format_money(budget, currency)} = {format_money(allowed, currency)}."
                        ),
                        details={"spend_month_micros": row.spend_month_micros, "allowed_micros": allowed, "days": days},
                        account_id=account.pk,
                    )
                )
    scope = Q(kind__in=(Alert.Kind.BUDGET_OVERSPEND, Alert.Kind.PACING_OVERSPEND))
    if not scope_all:
        scope &= Q(account__in=[a.pk for a in accounts])
    return _alerts_reconcile(scope=scope, firing=firing, now=now)


def api_failure_alerts_evaluate(*, now: datetime | None = None) -> AlertChanges:
    now = now or timezone.now()
    window = setting("ALERT_API_WINDOW_MINUTES")
    threshold = float(setting("ALERT_API_ERROR_RATE"))
    min_calls = setting("ALERT_API_MIN_CALLS")
    firing = []
    for stats in selectors.platform_call_stats(since=now - timedelta(minutes=window)):
        if stats.calls >= min_calls and stats.error_rate > threshold:
            name = PLATFORM_NAMES.get(stats.platform, stats.platform)
            firing.append(
                AlertCondition(
                    kind=Alert.Kind.API_FAILURES,
                    subject=f"platform:{stats.platform}",
                    subject_label=name,
                    severity=Alert.Severity.CRITICAL if stats.error_rate >= 0.5 else Alert.Severity.WARNING,
                    value=round(stats.error_rate, 4),
                    threshold=threshold,
                    message=(
                        f"{name} API failures: {stats.failures} of {stats.calls} calls failed in the last "
                        f"{window} minutes ({stats.error_rate:.1%}, alert above {threshold:.0%})."
                    ),
                    details={"calls": stats.calls, "failures": stats.failures, "window_minutes": window},
                )
            )
    return _alerts_reconcile(scope=Q(kind=Alert.Kind.API_FAILURES), firing=firing, now=now)


def webhook_delay_alerts_evaluate(*, now: datetime | None = None) -> AlertChanges:
    now = now or timezone.now()
    limit = float(setting("ALERT_WEBHOOK_DELAY_SECONDS"))
    delays = webhook_selectors.webhook_delays(now=now, window=timedelta(minutes=setting("ALERT_API_WINDOW_MINUTES")))
    firing = []
    if delays.oldest_unprocessed_event_seconds > limit:
        firing.append(
            AlertCondition(
                kind=Alert.Kind.WEBHOOK_DELAY,
                subject="webhooks:inbox",
                subject_label="Webhook inbox",
                severity=Alert.Severity.CRITICAL
                if delays.oldest_unprocessed_event_seconds > 4 * limit
                else Alert.Severity.WARNING,
                value=round(delays.oldest_unprocessed_event_seconds, 1),
                threshold=limit,
                message=(
                    f"Webhook delay: event #{delays.oldest_unprocessed_event_id} has waited "
                    f"{delays.oldest_unprocessed_event_seconds / 60:.1f} minutes unprocessed "
                    f"(alert above {limit / 60:.0f}); is the worker running?"
                ),
                details={"event_id": delays.oldest_unprocessed_event_id},
            )
        )
    if delays.worst_lead_lag_seconds > limit:
        firing.append(
            AlertCondition(
                kind=Alert.Kind.WEBHOOK_DELAY,
                subject="webhooks:leads",
                subject_label="Lead processing",
                severity=Alert.Severity.WARNING,
                value=round(delays.worst_lead_lag_seconds, 1),
                threshold=limit,
                message=(
                    f"Webhook delay: lead #{delays.worst_lead_id} took {delays.worst_lead_lag_seconds / 60:.1f} "
                    f"minutes from submission to processing (alert above {limit / 60:.0f})."
                ),
                details={"lead_id": delays.worst_lead_id},
            )
        )
    return _alerts_reconcile(scope=Q(kind=Alert.Kind.WEBHOOK_DELAY), firing=firing, now=now)


def _alerts_reconcile(*, scope: Q, firing: list[AlertCondition], now: datetime) -> AlertChanges:
    """Open an alert per new condition, refresh the open ones, resolve those in scope that cleared.

    The partial unique constraint keeps one open alert per kind and subject even when two
    evaluations race: the loser refreshes the winner's row instead of opening a second.
    """
    changes = AlertChanges()
    open_alerts = {(a.kind, a.subject): a for a in Alert.objects.filter(scope, resolved_at__isnull=True)}
    for condition in firing:
        values = {
            "subject_label": condition.subject_label[:255],
            "severity": condition.severity,
            "value": condition.value,
            "threshold": condition.threshold,
            "message": condition.message,
            "details": condition.details,
            "last_seen_at": now,
        }
        alert = open_alerts.pop((condition.kind, condition.subject), None)
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=condition.kind,
                        subject=condition.subject,
                        account_id=condition.account_id,
                        opened_at=now,
                        **values,
                    )
                changes.opened.append(alert)
                logger.warning("alert opened", extra={"kind": alert.kind, "subject": alert.subject})
                continue
            except IntegrityError:
                pass  # opened meanwhile by a concurrent evaluation: refresh it below
        Alert.objects.filter(kind=condition.kind, subject=condition.subject, resolved_at__isnull=True).update(**values)
    for alert in open_alerts.values():
        if Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now, last_seen_at=now):
            alert.refresh_from_db()
            changes.resolved.append(alert)
            logger.info("alert resolved", extra={"kind": alert.kind, "subject": alert.subject})
    return changes


# --- Processes: workers (canary), beat, the monitor itself ---------------------------------------


def _heartbeat(name: str) -> ProcessHeartbeat | None:
    return ProcessHeartbeat.objects.filter(name=name).first()


def worker_canary_waiting_seconds(*, now: datetime | None = None) -> float:
    """How long the oldest canary no worker has run yet has waited (0 when none waits)."""
    now = now or timezone.now()
    canary = _heartbeat(ProcessHeartbeat.WORKER_CANARY)
    if canary is None or canary.canary_pending_since is None:
        return 0.0
    return max((now - canary.canary_pending_since).total_seconds(), 0.0)


def beat_heartbeat_age_seconds(*, now: datetime | None = None) -> float | None:
    """Seconds since beat's scheduler last wrote its heartbeat. Never written: counted from the
    monitor's start (a fresh install gets the same grace as a beat that just stopped); None when
    no monitor ever ran either (nothing watches, nothing to say)."""
    now = now or timezone.now()
    beat = _heartbeat(ProcessHeartbeat.BEAT)
    if beat is not None and beat.beat_at is not None:
        return max((now - beat.beat_at).total_seconds(), 0.0)
    monitor = _heartbeat(ProcessHeartbeat.MONITOR)
    if monitor is None or monitor.started_at is None:
        return None
    return max((now - monitor.started_at).total_seconds(), 0.0)


def monitor_heartbeat_age_seconds(*, now: datetime | None = None) -> float | None:
    """Seconds since the alert monitor's last cycle; None when no monitor ever ran."""
    now = now or timezone.now()
    monitor = _heartbeat(ProcessHeartbeat.MONITOR)
    if monitor is None or monitor.beat_at is None:
        return None
    return max((now - monitor.beat_at).total_seconds(), 0.0)


def _queue_depth() -> int | None:
    """Messages waiting in the default Celery queue (Redis brokers only; None when unknown)."""
    url = settings.CELERY_BROKER_URL or ""
    if urlsplit(url).scheme not in ("redis", "rediss"):
        return None
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            # kombu keeps one list per priority step: "celery", then "celery\x06\x163", ...
            keys = [k for k in client.scan_iter(match="celery*", count=100) if k == b"celery" or k[6:8] == b"\x06\x16"]
            return sum(client.llen(key) for key in keys)
        finally:
            client.close()
    except Exception:
        return None


def process_alerts_evaluate(*, now: datetime | None = None) -> AlertChanges:
    """Workers not taking tasks (the canary waits), beat not running, the monitor not running."""
    now = now or timezone.now()
    firing: list[AlertCondition] = []

    limit = tunable("ALERT_WORKER_STALE_SECONDS")
    waited = worker_canary_waiting_seconds(now=now)
    if waited > limit:
        canary = _heartbeat(ProcessHeartbeat.WORKER_CANARY)
        depth = _queue_depth()
        last_ran = canary.beat_at if canary else None
        firing.append(
            AlertCondition(
                kind=Alert.Kind.WORKERS_STALLED,
                subject="workers:celery",
                subject_label="Celery workers",
                severity=Alert.Severity.CRITICAL if waited > 4 * limit else Alert.Severity.WARNING,
                value=round(waited, 1),
                threshold=limit,
                message=(
                    f"Workers are not taking tasks: a canary task queued {waited / 60:.1f} minutes ago has not "
                    f"been run by any worker (alert above {limit / 60:.0f} min). "
                    + (f"{depth} task(s) wait in the queue. " if depth is not None else "")
                    + (f"A worker last ran one at {last_ran:%Y-%m-%d %H:%M:%S} UTC. " if last_ran else "")
                    + "Leads, syncs and uploads wait meanwhile: is a worker running, and does it reach the broker?"
                ),
                details={"queue_depth": depth, "last_ran_at": last_ran.isoformat() if last_ran else None},
            )
        )

    limit = tunable("ALERT_BEAT_STALE_SECONDS")
    age = beat_heartbeat_age_seconds(now=now)
    if age is not None and age > limit:
        beat = _heartbeat(ProcessHeartbeat.BEAT)
        seen = beat.beat_at if beat else None
        firing.append(
            AlertCondition(
                kind=Alert.Kind.BEAT_STALLED,
                subject="beat:scheduler",
                subject_label="Celery beat",
                severity=Alert.Severity.CRITICAL if age > 4 * limit else Alert.Severity.WARNING,
                value=round(age, 1),
                threshold=limit,
                message=(
                    "Beat has not run: "
                    + (
                        f"its last heartbeat was {age / 60:.1f} minutes ago ({seen:%Y-%m-%d %H:%M:%S} UTC)"
                        if seen
                        else f"no heartbeat at all in the {age / 60:.1f} minutes the monitor has watched"
                    )
                    + f" (alert above {limit / 60:.0f} min). No periodic job (syncs, conversion uploads, "
                    "sweeps, digests) is queued until it runs again; beat must run as exactly one process, "
                    "with --scheduler optimization.beat:HeartbeatScheduler."
                ),
                details={"last_beat_at": seen.isoformat() if seen else None},
            )
        )

    limit = tunable("ALERT_MONITOR_STALE_SECONDS")
    age = monitor_heartbeat_age_seconds(now=now)
    if age is not None and age > limit:
        firing.append(
            AlertCondition(
                kind=Alert.Kind.MONITOR_STALLED,
                subject="monitor:alerts",
                subject_label="Alert monitor",
                severity=Alert.Severity.WARNING,
                value=round(age, 1),
                threshold=limit,
                message=(
                    f"The alert monitor has not run for {age / 60:.1f} minutes (alert above {limit / 60:.0f} min): "
                    "a worker evaluates the alerts meanwhile, so a stalled worker would go unnoticed. "
                    "Start `manage.py alert_monitor` (the monitor process)."
                ),
            )
        )
    kinds = (Alert.Kind.WORKERS_STALLED, Alert.Kind.BEAT_STALLED, Alert.Kind.MONITOR_STALLED)
    return _alerts_reconcile(scope=Q(kind__in=kinds), firing=firing, now=now)


def worker_canary_send(*, now: datetime | None = None) -> bool:
    """Queue a canary task when none waits and the last one is ``ALERT_CANARY_INTERVAL_SECONDS``
    old, or again when one has waited ``ALERT_CANARY_RESEND_SECONDS`` (it may have been lost).

    The row is written before the task is published: a worker may run the canary before this
    process gets back here. A broker that refuses the task leaves the canary waiting, which is
    right: no worker can take tasks from a queue nobody can reach.
    """
    now = now or timezone.now()
    row, _ = ProcessHeartbeat.objects.get_or_create(name=ProcessHeartbeat.WORKER_CANARY)
    since_sent = (now - row.canary_sent_at).total_seconds() if row.canary_sent_at else None
    if row.canary_pending_since is None:
        if since_sent is not None and since_sent < tunable("ALERT_CANARY_INTERVAL_SECONDS"):
            return False
        pending_since = now
    else:
        if since_sent is not None and since_sent < tunable("ALERT_CANARY_RESEND_SECONDS"):
            return False
        pending_since = row.canary_pending_since
    ProcessHeartbeat.objects.filter(pk=row.pk).update(canary_sent_at=now, canary_pending_since=pending_since)
    try:
        enqueue.send(
            enqueue.WORKER_CANARY,
            now.isoformat(),
            # Lead work's priority: the canary measures the wait a new lead would have.
            priority=getattr(settings, "LEAD_TASK_PRIORITY", 0),
            # Replaced by the next resend; a worker back after a long outage runs one, not dozens.
            expires=tunable("ALERT_CANARY_RESEND_SECONDS"),
            retry=False,
        )
    except Exception as exc:
        logger.warning("worker canary not queued: the broker refused it", extra={"error": type(exc).__name__})
    return True


def worker_canary_ran(*, sent_at: datetime, worker: str = "", now: datetime | None = None) -> None:
    """A worker ran a canary: workers take tasks. Clears the wait, whichever canary it was."""
    now = now or timezone.now()
    lag = max((now - sent_at).total_seconds(), 0.0)
    updated = ProcessHeartbeat.objects.filter(name=ProcessHeartbeat.WORKER_CANARY).update(
        beat_at=now, canary_pending_since=None, details={"last_lag_seconds": round(lag, 3), "worker": worker[:200]}
    )
    if not updated:
        ProcessHeartbeat.objects.get_or_create(
            name=ProcessHeartbeat.WORKER_CANARY, defaults={"beat_at": now, "details": {"last_lag_seconds": lag}}
        )


def process_heartbeat(name: str, *, started: bool = False, now: datetime | None = None, **details: Any) -> None:
    """Write a process's sign of life (and, at its start, when it started)."""
    now = now or timezone.now()
    values: dict[str, Any] = {"beat_at": now, "details": {"host": socket.gethostname(), "pid": os.getpid(), **details}}
    if started:
        values["started_at"] = now
    if not ProcessHeartbeat.objects.filter(name=name).update(**values):
        try:
            with transaction.atomic():
                ProcessHeartbeat.objects.create(name=name, **{"started_at": now, **values})
        except IntegrityError:
            ProcessHeartbeat.objects.filter(name=name).update(**values)


# --- The monitor ---------------------------------------------------------------------------------


@contextmanager
def evaluation_lock() -> Iterator[bool]:
    """Yield True when this process may evaluate and send now, False when another one does.

    PostgreSQL: a session advisory lock, released at the end of the cycle (or with the session,
    should the process die). Other databases are the single-machine setups (SQLite under
    `make run`): a file lock beside the database does the same there.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [EVALUATION_LOCK_KEY])
            held = bool(cursor.fetchone()[0])
        try:
            yield held
        finally:
            if held:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [EVALUATION_LOCK_KEY])
                except Exception:
                    # The session is gone, and its lock with it.
                    logger.debug("advisory lock not released", exc_info=True)
        return
    path = settings.VAR_DIR / "alert-evaluation.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def monitor_cycle(*, now: datetime | None = None) -> AlertChanges | None:
    """One cycle of the alert monitor: heartbeat, canary, evaluate, send. None when another
    monitor holds the lock (this one stands by and takes over when that one stops)."""
    with evaluation_lock() as held:
        now = now or timezone.now()
        if not held:
            return None
        process_heartbeat(ProcessHeartbeat.MONITOR, now=now)
        worker_canary_send(now=now)
        return alerts_evaluate(now=now)


def monitor_run(
    *, interval: float, stop: threading.Event, on_cycle: Callable[[AlertChanges | None], None] | None = None
) -> None:
    """Run cycles every ``interval`` seconds until ``stop`` is set. A failed cycle (the database
    away) is logged and the next one tries again on a fresh connection."""
    process_heartbeat(ProcessHeartbeat.MONITOR, started=True)
    while not stop.is_set():
        started = time.monotonic()
        try:
            # As around a request: a connection the database dropped (or too old) is replaced.
            close_old_connections()
            changes = monitor_cycle()
        except Exception:
            logger.exception("alert monitor cycle failed; trying again", extra={"interval": interval})
            connection.close()
            changes = None
        if on_cycle is not None:
            on_cycle(changes)
        stop.wait(max(interval - (time.monotonic() - started), 0.5))


def worker_evaluation_due(*, now: datetime | None = None) -> bool:
    """The worker-side evaluation (beat's task) runs only while no monitor does: a monitor whose
    heartbeat is fresh evaluates already, and more often."""
    age = monitor_heartbeat_age_seconds(now=now)
    return age is None or age > tunable("ALERT_MONITOR_STALE_SECONDS")


# --- Destinations and notifications --------------------------------------------------------------

_SPLIT_RECIPIENTS = re.compile(r"[\s,;]+")


def parse_recipients(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for address in _SPLIT_RECIPIENTS.split(text or ""):
        if address:
            seen.setdefault(address, None)
    return list(seen)


@dataclass(frozen=True)
class AlertDestinations:
    """Where alerts go now, and where each part comes from (admin, environment, off, none)."""

    email_recipients: list[str]
    email_source: str
    slack_url: str
    slack_source: str

    @property
    def channels(self) -> list[str]:
        channels: list[str] = []
        if self.email_recipients:
            channels.append(AlertNotification.Channel.EMAIL)
        if self.slack_url:
            channels.append(AlertNotification.Channel.SLACK)
        return channels

    @property
    def slack_display(self) -> str:
        """The Slack URL as it may be shown: its host only (the path is the credential)."""
        if not self.slack_url:
            return ""
        parts = urlsplit(self.slack_url)
        return f"{parts.scheme}://{parts.netloc}/…"


def alert_destinations() -> AlertDestinations:
    """Admin's values (AlertSettings) where set; the environment's where admin left a field blank."""
    row = AlertSettings.objects.filter(pk=AlertSettings.SINGLETON_ID).first()
    if row is not None and not row.email_enabled:
        recipients, email_source = [], "off"
    elif row is not None and parse_recipients(row.email_recipients):
        recipients, email_source = parse_recipients(row.email_recipients), "admin"
    else:
        recipients = [r for r in setting("ALERT_EMAIL_RECIPIENTS") if r]
        email_source = "environment" if recipients else "none"
    if row is not None and not row.slack_enabled:
        slack_url, slack_source = "", "off"
    elif row is not None and row.slack_webhook_url:
        slack_url, slack_source = row.slack_webhook_url, "admin"
    else:
        slack_url = setting("ALERT_SLACK_WEBHOOK_URL") or ""
        slack_source = "environment" if slack_url else "none"
    return AlertDestinations(recipients, email_source, slack_url, slack_source)


def alert_destinations_configured() -> bool:
    return bool(alert_destinations().channels)


def alerts_notify_pending(*, now: datetime | None = None) -> int:
    """Send every notification still owed, each channel once; returns the alert events fully sent.

    A channel that fails is recorded (attempts, error, next try) and tried again with backoff;
    the alert is marked notified only once every configured channel has sent. With nowhere to
    send (no recipient, no Slack URL) nothing is recorded as sent: the notifications stay owed
    and go out once a destination is configured, instead of being marked sent to nobody.
    """
    now = now or timezone.now()
    waiting = selectors.alerts_awaiting_notification()
    if not waiting:
        return 0
    destinations = alert_destinations()
    if not destinations.channels:
        logger.warning(
            "alert notifications waiting with nowhere to send: set the alert destinations in admin "
            "(or ALERT_EMAIL_RECIPIENTS / ALERT_SLACK_WEBHOOK_URL)",
            extra={"waiting": len(waiting)},
        )
        return 0
    notified = 0
    for alert, event in waiting:
        outcomes = [_notification_send(alert, event, channel, destinations, now) for channel in destinations.channels]
        if all(outcome == "sent" for outcome in outcomes):
            field_name = "open_notified_at" if event == "opened" else "resolve_notified_at"
            if Alert.objects.filter(pk=alert.pk, **{f"{field_name}__isnull": True}).update(
                **{field_name: timezone.now()}
            ):
                notified += 1
    return notified


def _notification_send(alert: Alert, event: str, channel: str, destinations: AlertDestinations, now: datetime) -> str:
    """ "sent" (now or before), "failed" (recorded, retried later) or "waiting" (not yet due, or
    another process is sending it)."""
    note, _ = AlertNotification.objects.get_or_create(alert=alert, event=event, channel=channel)
    if note.status == AlertNotification.Status.SENT:
        return "sent"
    due = Q(status__in=(AlertNotification.Status.PENDING, AlertNotification.Status.FAILED)) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    abandoned = Q(status=AlertNotification.Status.SENDING, last_attempt_at__lt=now - SENDING_LEASE)
    # The claim: whoever updates the row sends; a second evaluator finds it taken.
    if not AlertNotification.objects.filter(due | abandoned, pk=note.pk).update(
        status=AlertNotification.Status.SENDING, last_attempt_at=now, attempts=F("attempts") + 1
    ):
        return "waiting"
    try:
        alert_notify(alert=alert, event=event, channel=channel, destinations=destinations)
    except Exception as exc:
        error = _failure_text(channel, exc)
        attempts = AlertNotification.objects.values_list("attempts", flat=True).get(pk=note.pk)
        delay = backoff_delay(
            attempts, base=tunable("ALERT_NOTIFY_RETRY_SECONDS"), cap=tunable("ALERT_NOTIFY_RETRY_MAX_SECONDS")
        )
        AlertNotification.objects.filter(pk=note.pk).update(
            status=AlertNotification.Status.FAILED, last_error=error, next_attempt_at=now + timedelta(seconds=delay)
        )
        logger.warning(
            "alert notification not sent; tried again later",
            extra={"alert_id": alert.pk, "channel": channel, "attempts": attempts, "error": error, "retry_in": delay},
        )
        return "failed"
    AlertNotification.objects.filter(pk=note.pk).update(
        status=AlertNotification.Status.SENT, sent_at=timezone.now(), last_error="", next_attempt_at=None
    )
    return "sent"


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_URL = re.compile(r"(https?://[^/\s'\"]+)[^\s'\"]*")


def _failure_text(channel: str, exc: Exception) -> str:
    """Why a send failed, fit to show and log: no Slack URL path (the credential), no address."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        text = f"Slack answered HTTP {exc.response.status_code}: {exc.response.text[:200]}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = _URL.sub(r"\1/…", text)
    text = re.sub(r"url: /\S*", "url: /…", text)  # urllib3 names the path on its own
    return _EMAIL.sub("<address>", text)[:500]


def alert_notify(*, alert: Alert, event: str, channel: str, destinations: AlertDestinations | None = None) -> None:
    """Send one message about ``alert`` on one channel: email to the recipients, or a message to
    the Slack-compatible incoming webhook. Raises when it was not sent."""
    destinations = destinations or alert_destinations()
    if event == "opened":
        title = f"[{alert.severity.upper()}] {alert.get_kind_display()}: {alert.subject_label or alert.subject}"
        body = alert.message
    else:
        title = f"[RESOLVED] {alert.get_kind_display()}: {alert.subject_label or alert.subject}"
        body = f"Resolved at {alert.resolved_at:%Y-%m-%d %H:%M} UTC; it was: {alert.message}"
    timeout = tunable("ALERT_NOTIFY_TIMEOUT_SECONDS")
    if channel == AlertNotification.Channel.EMAIL:
        if not destinations.email_recipients:
            raise RuntimeError("no email recipient is configured any more")
        mail = get_connection(fail_silently=False, timeout=timeout)
        send_mail(
            title,
            body,
            settings.DEFAULT_FROM_EMAIL,
            destinations.email_recipients,
            fail_silently=False,
            connection=mail,
        )
    elif channel == AlertNotification.Channel.SLACK:
        if not destinations.slack_url:
            raise RuntimeError("no Slack webhook URL is configured any more")
        response = requests.post(destinations.slack_url, json={"text": f"*{title}*\n{body}"}, timeout=timeout)
        response.raise_for_status()
    else:
        raise ValueError(f"unknown alert channel {channel!r}")


def notifications_unsent() -> list[AlertNotification]:
    """Notifications tried and not sent (failed, or being sent), oldest first: what admin shows."""
    return list(
        AlertNotification.objects.exclude(status=AlertNotification.Status.SENT)
        .select_related("alert")
        .order_by("created_at", "id")
    )
