"""What is wrong right now, read live in four bounded queries: the open alerts themselves (what,
since when, a link to what they are about), platform calls over the API failure alert's window
(an outage shows even while no alert is evaluated), budget pushes stuck past their next attempt
or tried several times, and whether workers take tasks (the alert monitor's canary, and the
worker's liveness heartbeat through ``adsplatform.worker_liveness``). What concerns no account
(platforms, workers, platform-wide alerts) is shown to people who see every account."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, Max, Q, Value, When, Window
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from adsplatform import worker_liveness
from dashboard.queries import _open_alerts, optional_model
from optimization.alerts import tunable as alert_tunable
from optimization.conf import setting as alert_setting
from platforms.base import format_money

ALERT_LIST_LIMIT = 20
STUCK_LIST_LIMIT = 10
# A pending push whose next attempt is this far overdue has lost its message or its worker (the
# sweeper re-sends such pushes every minute, so one overdue longer than that is not being helped).
STUCK_PUSH_OVERDUE = timedelta(minutes=2)
# A push never attempted this long after it was requested: its message never reached a worker.
STUCK_PUSH_UNSTARTED = timedelta(minutes=5)
# Several attempts: the platform keeps refusing for a passing reason (quota, outage), or the
# worker dies mid-push; either way a person should look before the retries run out.
STUCK_PUSH_ATTEMPTS = 3
SEVERITY_RANK = {"critical": 0, "warning": 1}
PLATFORM_LABELS = {"google": "Google Ads", "meta": "Meta"}


@dataclass(frozen=True)
class AlertRow:
    """One open alert as the dashboard lists it: what, since when, and where to look."""

    id: int
    kind_label: str
    severity: str
    subject_label: str
    message: str
    opened_at: datetime
    last_seen_at: datetime
    notified: bool  # its "opened" notification went out (email / Slack)
    object_url: str  # the campaign, account, webhook source… it is about ("" when nothing to open)
    object_label: str
    alert_url: str  # the alert's own admin page

    @property
    def severity_label(self) -> str:
        return self.severity.title()


def _admin_url(name: str, *args: Any, query: str = "") -> str:
    try:
        url = reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return ""
    return f"{url}?{query}" if query else url


def alert_object_link(subject: str, details: Mapping[str, Any] | None) -> tuple[str, str]:
    """(url, label) of the admin page of what an alert is about, from its ``subject``
    (``campaign:<id>``, ``account:<id>``, ``source:<id>``, ``connection:<id>``, ``platform:<name>``,
    ``webhooks:…``, ``workers:…`` / ``beat:…`` / ``monitor:…``); ("", "") when there is no page."""
    kind, _, key = subject.partition(":")
    details = details or {}
    if kind == "campaign" and key:  # campaign ids are UUIDs
        return _admin_url("campaigns_campaign_change", key), "Campaign"
    if kind == "account" and key.isdigit():
        return _admin_url("campaigns_adaccount_change", int(key)), "Ad account"
    if kind in ("source", "webhook_source") and key.isdigit():
        return _admin_url("webhooks_webhooksource_change", int(key)), "Webhook source"
    if kind == "platform" and key:
        label = PLATFORM_LABELS.get(key, key)
        return _admin_url("campaigns_adaccount_changelist", query=f"platform__exact={key}"), f"{label} accounts"
    if kind == "connection" and key.isdigit():
        return _admin_url("connections_connection_change", int(key)), "Platform connection"
    if kind in ("workers", "beat", "monitor"):  # processes the alert monitor watches
        return _admin_url("optimization_processheartbeat_changelist"), "Process heartbeats"
    if subject == "webhooks:inbox":
        event_id = details.get("event_id")
        if isinstance(event_id, int):
            return _admin_url("webhooks_webhookevent_change", event_id), f"Webhook event #{event_id}"
        return _admin_url("webhooks_webhookevent_changelist", query="status__exact=received"), "Webhook inbox"
    if subject == "webhooks:leads":
        lead_id = details.get("lead_id")
        if isinstance(lead_id, int):
            return _admin_url("webhooks_lead_change", lead_id), f"Lead #{lead_id}"
        return _admin_url("webhooks_lead_changelist"), "Leads"
    return "", ""


def open_alert_list(
    *, account_ids: list[int] | None, platform_wide: bool, limit: int = ALERT_LIST_LIMIT
) -> list[AlertRow]:
    """Query 7: the open alerts themselves, critical first, then the longest open."""
    alerts = _open_alerts(account_ids=account_ids, platform_wide=platform_wide)
    if alerts is None:
        return []
    severity_order = Case(
        *(When(severity=severity, then=Value(rank)) for severity, rank in SEVERITY_RANK.items()),
        default=Value(len(SEVERITY_RANK)),
    )
    rows = []
    for alert in alerts.order_by(severity_order, "opened_at", "id")[:limit]:
        object_url, object_label = alert_object_link(alert.subject, alert.details)
        rows.append(
            AlertRow(
                id=alert.pk,
                kind_label=alert.get_kind_display(),
                severity=alert.severity,
                subject_label=alert.subject_label or alert.subject,
                message=alert.message,
                opened_at=alert.opened_at,
                last_seen_at=alert.last_seen_at,
                notified=alert.open_notified_at is not None,
                object_url=object_url,
                object_label=object_label,
                alert_url=_admin_url("optimization_alert_change", alert.pk),
            )
        )
    return rows


@dataclass(frozen=True)
class PlatformHealth:
    """One platform's calls over the alert window, and how they ended."""

    platform: str
    calls: int
    failures: int
    last_failure_at: datetime | None
    last_failure: str  # outcome and error code of the latest failure
    last_ok_at: datetime | None
    threshold: float  # the error rate above which the API failure alert fires

    @property
    def label(self) -> str:
        return PLATFORM_LABELS.get(self.platform, self.platform)

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def status(self) -> str:
        """down (every recent call failed), failing (above the alert's rate), errors (some), ok."""
        if self.calls and self.failures == self.calls:
            return "down"
        if self.error_rate > self.threshold:
            return "failing"
        return "errors" if self.failures else "ok"

    @property
    def severity(self) -> str:
        return {"down": "critical", "failing": "warning", "errors": "notice"}.get(self.status, "ok")

    @property
    def error_percent(self) -> str:
        return f"{100 * self.error_rate:.0f}%"


def platform_health(*, now: datetime) -> tuple[list[PlatformHealth], str] | None:
    """Query 8: calls to each platform over the API failure alert's window, read from the call
    records directly (not from the alert), so an outage shows even while alerts are not evaluated.
    None when the optimization app keeps no call records."""
    record_model = optional_model("optimization", "PlatformCallRecord")
    if record_model is None:
        return None
    window = int(alert_setting("ALERT_API_WINDOW_MINUTES"))
    threshold = float(alert_setting("ALERT_API_ERROR_RATE"))
    min_calls = int(alert_setting("ALERT_API_MIN_CALLS"))
    rows = (
        record_model.objects.filter(called_at__gte=now - timedelta(minutes=window))
        .values("platform", "outcome", "error_code")
        .annotate(n=Count("id"), last=Max("called_at"))
        .order_by()
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        one = found.setdefault(
            row["platform"],
            {"calls": 0, "failures": 0, "last_failure_at": None, "last_failure": "", "last_ok_at": None},
        )
        one["calls"] += row["n"]
        if row["outcome"] == "ok":
            one["last_ok_at"] = max(filter(None, [one["last_ok_at"], row["last"]]))
            continue
        one["failures"] += row["n"]
        if one["last_failure_at"] is None or row["last"] > one["last_failure_at"]:
            one["last_failure_at"] = row["last"]
            one["last_failure"] = " ".join(filter(None, [row["outcome"], row["error_code"]]))
    health = [PlatformHealth(platform, threshold=threshold, **one) for platform, one in sorted(found.items())]
    note = (
        f"Calls in the last {window} minutes; the API failure alert opens above {threshold:.0%} "
        f"failed of at least {min_calls} calls."
    )
    return health, note


@dataclass(frozen=True)
class StuckPush:
    id: int
    campaign_id: int
    campaign_name: str
    currency_code: str
    change: str  # old → new, in words
    attempts: int
    next_attempt_at: datetime | None
    requested_at: datetime
    error_message: str
    why: str
    campaign_url: str
    run_url: str


def stuck_pushes(*, account_ids: list[int] | None, now: datetime) -> tuple[list[StuckPush], int]:
    """Query 9: pending pushes past their next attempt, never attempted long after the request, or
    tried several times; the first ``STUCK_LIST_LIMIT`` and how many there are."""
    run_model = optional_model("optimization", "OptimizationRun")
    if run_model is None:
        return [], 0
    runs = run_model.objects.filter(status="pending").filter(
        Q(next_attempt_at__lt=now - STUCK_PUSH_OVERDUE)
        | Q(next_attempt_at__isnull=True, push_attempts=0, created_at__lt=now - STUCK_PUSH_UNSTARTED)
        | Q(push_attempts__gte=STUCK_PUSH_ATTEMPTS)
    )
    if account_ids is not None:
        runs = runs.filter(campaign__account_id__in=account_ids)
    found = list(
        runs.annotate(total=Window(Count("id")))
        .select_related("campaign__account")
        .order_by("created_at", "id")[:STUCK_LIST_LIMIT]
    )
    pushes = []
    for run in found:
        currency = run.campaign.account.currency_code
        if run.push_attempts >= STUCK_PUSH_ATTEMPTS:
            why = f"{run.push_attempts} attempts so far"
        elif run.next_attempt_at is not None:
            why = f"next attempt was due {run.next_attempt_at:%Y-%m-%d %H:%M} UTC"
        else:
            why = "never attempted"
        new_budget = getattr(run, "new_budget_micros", None)
        if new_budget is not None:
            change = f"budget {format_money(run.old_budget_micros, currency)} → {format_money(new_budget, currency)}"
        else:  # a status change (pause / enable)
            change = f"status {getattr(run, 'old_status', '') or '—'} → {getattr(run, 'new_status', '') or '—'}"
        pushes.append(
            StuckPush(
                id=run.pk,
                campaign_id=run.campaign_id,
                campaign_name=run.campaign.name,
                currency_code=currency,
                change=change,
                attempts=run.push_attempts,
                next_attempt_at=run.next_attempt_at,
                requested_at=run.created_at,
                error_message=run.error_message,
                why=why,
                campaign_url=_admin_url("campaigns_campaign_change", run.campaign_id),
                run_url=_admin_url("optimization_optimizationrun_change", run.pk),
            )
        )
    return pushes, (found[0].total if found else 0)


@dataclass(frozen=True)
class WorkerHealth:
    """Are workers taking tasks? From the alert monitor's canary (a task it queues that any worker
    runs, recorded in the database, so it speaks for every machine) and from the worker's own
    liveness heartbeat (adsplatform.worker_liveness, a file on the worker's machine)."""

    state: str  # consuming | stalled | unknown (no sign either way yet)
    detail: str
    last_beat_at: datetime | None  # this machine's worker heartbeat
    canary_ran_at: datetime | None  # the last canary a worker ran

    @property
    def severity(self) -> str:
        return {"consuming": "ok", "stalled": "critical"}.get(self.state, "notice")


def worker_health(*, now: datetime) -> WorkerHealth:
    """Query 10 (the canary's row), one file read, and a broker PING only when the heartbeat file is
    stale (to tell a stalled worker from a broker outage), through worker_liveness's public probe."""
    canary_model = optional_model("optimization", "ProcessHeartbeat")
    canary = None
    if canary_model is not None:
        canary = canary_model.objects.filter(name=canary_model.WORKER_CANARY).first()
    canary_ran_at = canary.beat_at if canary else None
    stale_after = alert_tunable("ALERT_WORKER_STALE_SECONDS")
    path = worker_liveness.heartbeat_file()
    beat = worker_liveness.last_beat(path)
    last_beat_at = None if beat is None else datetime.fromtimestamp(beat, tz=UTC)
    if canary is not None and canary.canary_pending_since is not None:
        waited = (now - canary.canary_pending_since).total_seconds()
        if waited > stale_after:
            return WorkerHealth(
                "stalled",
                f"No worker has run the alert monitor's canary task, queued {waited / 60:.0f} minutes ago "
                f"(workers count as stalled after {stale_after / 60:.0f}): leads, syncs and uploads wait.",
                last_beat_at,
                canary_ran_at,
            )
    if beat is not None:
        alive, why = worker_liveness.check(path, worker_liveness.stale_after(), settings.CELERY_BROKER_URL)
        return WorkerHealth(
            "consuming" if alive else "stalled", f"This machine's worker: {why}.", last_beat_at, canary_ran_at
        )
    if canary_ran_at is not None and (now - canary_ran_at).total_seconds() <= stale_after + 60:
        return WorkerHealth("consuming", "A worker ran the alert monitor's canary task.", None, canary_ran_at)
    return WorkerHealth(
        "unknown",
        "No sign from a worker yet: no canary run (is the alert monitor running?) and no worker heartbeat "
        "on this machine.",
        None,
        canary_ran_at,
    )


@dataclass
class Attention:
    """The dashboard's first section: what is wrong now."""

    alerts: list[AlertRow]
    alert_total: int
    platforms: list[PlatformHealth] | None  # None: not shown to this viewer (platform-wide)
    platform_note: str
    stuck: list[StuckPush]
    stuck_total: int
    worker: WorkerHealth | None  # None: not shown to this viewer (platform-wide)

    @property
    def platform_problems(self) -> list[PlatformHealth]:
        return [p for p in self.platforms or [] if p.status != "ok"]

    @property
    def alerts_hidden(self) -> int:
        return max(self.alert_total - len(self.alerts), 0)

    @property
    def stuck_hidden(self) -> int:
        return max(self.stuck_total - len(self.stuck), 0)


def dashboard_attention(*, account_ids: list[int] | None, platform_wide: bool, alert_total: int) -> Attention:
    """Open alerts, platform outages, stuck pushes and the worker, for one viewer. What concerns no
    account (platforms, the worker) is shown to people with a role on every account, like
    platform-wide alerts."""
    now = timezone.now()
    platforms = platform_health(now=now) if platform_wide else None
    stuck, stuck_total = stuck_pushes(account_ids=account_ids, now=now)
    return Attention(
        alerts=open_alert_list(account_ids=account_ids, platform_wide=platform_wide),
        alert_total=alert_total,
        platforms=None if platforms is None else platforms[0],
        platform_note="" if platforms is None else platforms[1],
        stuck=stuck,
        stuck_total=stuck_total,
        worker=worker_health(now=now) if platform_wide else None,
    )


# --- Composition ----------------------------------------------------------------------------------
