"""Alerts: evaluate the conditions, open / refresh / resolve one alert per condition, and send
the notifications still owed (email, Slack-compatible webhook).

Kept apart from the budget workflows in ``optimization.services`` so that the alert monitor,
which runs outside the worker it watches, imports only what alerting needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import AdAccount
from campaigns.services import account_today
from optimization import selectors
from optimization.changes import PLATFORM_NAMES, format_money
from optimization.conf import setting
from optimization.models import Alert
from optimization.services import platform_calls_prune

logger = logging.getLogger(__name__)


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
    """Evaluate every alert, open and resolve, then send the notifications still owed."""
    now = now or timezone.now()
    changes = AlertChanges()
    changes.add(budget_alerts_evaluate(now=now))
    changes.add(api_failure_alerts_evaluate(now=now))
    changes.add(webhook_delay_alerts_evaluate(now=now))
    platform_calls_prune(now=now)
    changes.notified = alerts_notify_pending()
    return changes


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
                            f"Google may spend up to 2× on one day while pacing the month; the monthly "
                            f"pacing alert says whether the month is over budget."
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
    delays = selectors.webhook_delays(now=now, window=timedelta(minutes=setting("ALERT_API_WINDOW_MINUTES")))
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


def alert_destinations_configured() -> bool:
    return bool(list(setting("ALERT_EMAIL_RECIPIENTS")) or setting("ALERT_SLACK_WEBHOOK_URL"))


def alerts_notify_pending() -> int:
    """Send every notification still owed, once: each is claimed before sending, released on failure.

    With nowhere to send (no recipient, no Slack URL) nothing is claimed: the notifications stay
    owed and go out once a destination is configured, instead of being marked sent to nobody.
    """
    if not alert_destinations_configured():
        waiting = len(selectors.alerts_awaiting_notification())
        if waiting:
            logger.warning(
                "alert notifications waiting: set ALERT_EMAIL_RECIPIENTS or ALERT_SLACK_WEBHOOK_URL",
                extra={"waiting": waiting},
            )
        return 0
    sent = 0
    for alert, event in selectors.alerts_awaiting_notification():
        field_name = "open_notified_at" if event == "opened" else "resolve_notified_at"
        if not Alert.objects.filter(pk=alert.pk, **{f"{field_name}__isnull": True}).update(
            **{field_name: timezone.now()}
        ):
            continue  # another worker took it
        try:
            alert_notify(alert=alert, event=event)
        except Exception:
            logger.warning("alert notification failed; retried at the next evaluation", exc_info=True)
            Alert.objects.filter(pk=alert.pk).update(**{field_name: None})
            continue
        sent += 1
    return sent


def alert_notify(*, alert: Alert, event: str) -> None:
    """Tell people: email to ALERT_EMAIL_RECIPIENTS, a message to the Slack-compatible ALERT_SLACK_WEBHOOK_URL."""
    if event == "opened":
        title = f"[{alert.severity.upper()}] {alert.get_kind_display()}: {alert.subject_label or alert.subject}"
        body = alert.message
    else:
        title = f"[RESOLVED] {alert.get_kind_display()}: {alert.subject_label or alert.subject}"
        body = f"Resolved at {alert.resolved_at:%Y-%m-%d %H:%M} UTC; it was: {alert.message}"
    recipients = list(setting("ALERT_EMAIL_RECIPIENTS"))
    if recipients:
        send_mail(title, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    slack_url = setting("ALERT_SLACK_WEBHOOK_URL")
    if slack_url:
        response = requests.post(slack_url, json={"text": f"*{title}*\n{body}"}, timeout=10)
        response.raise_for_status()
