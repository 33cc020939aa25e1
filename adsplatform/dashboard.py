"""The operator dashboard: every app's numbers for a date range and an account, in a fixed number of queries.

``dashboard_data`` runs six aggregate queries whatever the data size (accounts, metrics by account
and day, budgets by account, conversion outcomes by day, leads by day, open alerts) and derives
everything else in Python from those few rows. Money stays per currency: an account has one
currency, so rows are grouped by account in SQL and added up per currency here, never across.

The two aggregates that scan a lot are cached: metrics by account and day under the campaigns
cache generation (every committed sync bumps it, so new numbers show at once), conversion
outcomes for a minute. Everything else (accounts, sync state, budgets, leads, alerts) is read
live on every render.

``dashboard_attention`` adds what is wrong right now, read live in four more bounded queries: the
open alerts themselves (what, since when, a link to what they are about), platform calls over the
API failure alert's window (an outage shows even while no alert is evaluated), budget pushes
stuck past their next attempt or tried several times, and whether workers take tasks (the alert
monitor's canary, and the worker's liveness heartbeat through ``adsplatform.worker_liveness``).
Every read is scoped to the accounts the viewer may see (``campaigns.access``); what concerns no
account (platforms, workers, platform-wide alerts) is shown to people who see every account.

``dashboard_charts`` turns the data into SVG charts (``adsplatform.charts``) with a table for each;
pacing bars are coloured by how far off pace they are (``pacing_severity``).
This module lives on the top floor because it reads every app.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, CharField, Count, F, Max, OuterRef, Q, Subquery, Sum, Value, When, Window
from django.db.models.functions import Coalesce, TruncDate
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from adsplatform import charts, worker_liveness
from campaigns import access
from campaigns.models import AdAccount, Campaign, CampaignStatus, DailyMetric, Platform, SyncRun
from campaigns.services import campaign_cache_generation, zone_today
from conversions.models import Conversion
from conversions.selectors import FINAL_STATUSES
from optimization.alerts import tunable as alert_tunable
from optimization.conf import setting as alert_setting
from platforms.base import minor_unit_micros
from webhooks.models import Lead, Priority
from webhooks.selectors import routing_gaps

DEFAULT_DAYS = 30
MAX_DAYS = 366
MICROS = 1_000_000
ACTIVE_SYNC_STATUSES = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
# Metrics change only through a sync, which bumps the generation the key carries; the timeout
# only bounds what a write that skips the sync (a hand edit in the admin) leaves stale.
METRICS_CACHE_SECONDS = 10 * 60
# Outcomes change with every upload batch; a minute behind is fine for a per-day trend.
OUTCOMES_CACHE_SECONDS = 60


def format_money(micros: int | Decimal | float | None, currency_code: str) -> str:
    """An amount in its currency's own precision (JPY without decimals), code after it."""
    if micros is None:
        return "—"
    unit = minor_unit_micros(currency_code)
    places = 0 if unit >= MICROS else (3 if unit == 1_000 else 2)
    return f"{Decimal(micros) / MICROS:,.{places}f} {currency_code}"


# --- Filters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardFilters:
    date_from: date
    date_to: date
    account_id: int | None = None
    # Who is looking (campaigns.access): the accounts they may see, None for every account (and
    # then also the leads and alerts tied to no account).
    visible_account_ids: frozenset[int] | None = None

    @property
    def days(self) -> list[date]:
        return [self.date_from + timedelta(days=n) for n in range((self.date_to - self.date_from).days + 1)]


class DashboardFilterForm(forms.Form):
    """The GET form above the dashboard; invalid input falls back to the last 30 days, all accounts."""

    date_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    date_to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    account = forms.TypedChoiceField(label="Account", coerce=int, required=False, empty_value=None)

    def __init__(self, data: Mapping[str, Any] | None, *, accounts: list[AccountRow], today: date) -> None:
        self.default_from, self.default_to = today - timedelta(days=DEFAULT_DAYS - 1), today
        # An untouched form (no filter in the URL) is valid: it means the defaults.
        if not data or not any(data.get(name) for name in ("date_from", "date_to", "account")):
            data = None
        super().__init__(
            data,
            initial={"date_from": self.default_from, "date_to": self.default_to},
            auto_id="dashboard-%s",
        )
        self.fields["account"].choices = [("", "All accounts")] + [
            (account.id, f"{account.name} ({account.platform_label}, {account.currency_code})") for account in accounts
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to:
            if date_from > date_to:
                self.add_error("date_to", "The end date is before the start date.")
            elif (date_to - date_from).days + 1 > MAX_DAYS:
                self.add_error("date_from", f"Choose at most {MAX_DAYS} days.")
        return cleaned

    def filters(self) -> DashboardFilters:
        if self.is_bound and self.is_valid():
            data = self.cleaned_data
            return DashboardFilters(data["date_from"], data["date_to"], data["account"])
        return DashboardFilters(self.default_from, self.default_to, None)


# --- Rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRow:
    id: int
    name: str
    platform: str
    currency_code: str
    time_zone: str
    is_active: bool
    needs_attention: bool
    last_synced_at: datetime | None
    sync_interval_minutes: int
    monthly_cap_micros: int | None
    latest_run_id: int | None
    latest_run_status: str | None
    latest_run_progress: str
    today: date  # in the account's own time zone, like its metric dates

    @property
    def platform_label(self) -> str:
        return Platform(self.platform).label if self.platform in Platform.values else self.platform

    @property
    def sync_is_active(self) -> bool:
        return self.latest_run_status in ACTIVE_SYNC_STATUSES


@dataclass(frozen=True)
class CurrencyTile:
    """One currency's money: today and month to date (account dates), and the range's outcomes."""

    currency_code: str
    spend_today_micros: int
    spend_month_micros: int
    spend_range_micros: int
    conversions: Decimal
    conversion_value_micros: int

    @property
    def cpa_micros(self) -> int | None:
        return int(self.spend_range_micros / self.conversions) if self.conversions else None

    @property
    def roas(self) -> Decimal | None:
        if not self.spend_range_micros:
            return None
        return (Decimal(self.conversion_value_micros) / self.spend_range_micros).quantize(Decimal("0.01"))

    # What the template shows: formatted here, because a template cannot pass the currency.
    @property
    def spend_today(self) -> str:
        return format_money(self.spend_today_micros, self.currency_code)

    @property
    def spend_month(self) -> str:
        return format_money(self.spend_month_micros, self.currency_code)

    @property
    def spend_range(self) -> str:
        return format_money(self.spend_range_micros, self.currency_code)

    @property
    def cpa(self) -> str:
        return format_money(self.cpa_micros, self.currency_code)

    @property
    def conversions_text(self) -> str:
        return f"{self.conversions.normalize():,f}" if self.conversions else "0"


@dataclass(frozen=True)
class SpendSeries:
    """Daily spend of one platform in one currency, beside the daily budgets enabled today."""

    platform: str
    currency_code: str
    spend_micros: list[int]
    daily_budget_micros: int


@dataclass(frozen=True)
class PacingRow:
    account: AccountRow
    spend_month_micros: int
    expected_to_date_micros: int | None  # what the cap or budgets allow by today
    cap_micros: int | None  # the monthly cap, when one is set
    basis: str  # what the expectation is based on, in words

    @property
    def percent(self) -> float | None:
        if not self.expected_to_date_micros:
            return None
        return round(100 * self.spend_month_micros / self.expected_to_date_micros, 1)

    @property
    def tone(self) -> str:
        """How far off pace, as a severity (a key of charts.TONES); "" without an allowance."""
        return pacing_severity(self.percent)[0]

    @property
    def pace_label(self) -> str:
        return pacing_severity(self.percent)[1]


# Pacing bands, by how much money is at stake: overspend is worse than underspend at the same
# distance (money gone cannot be unspent), and the 110% edge is the overspend alert's threshold.
PACING_FAR_OVER, PACING_OVER, PACING_ON, PACING_UNDER = 150.0, 110.0, 90.0, 50.0


def pacing_severity(percent: float | None) -> tuple[str, str]:
    """(tone, words) of a month-to-date pace: 442% is critical, 0% a warning, 100% fine."""
    if percent is None:
        return "", "no allowance"
    if percent > PACING_FAR_OVER:
        return "critical", "far over pace"
    if percent > PACING_OVER:
        return "warning", "over pace"
    if percent >= PACING_ON:
        return "ok", "on pace"
    if percent >= PACING_UNDER:
        return "notice", "under pace"
    return "warning", "far under pace"


@dataclass(frozen=True)
class SyncLagRow:
    account: AccountRow
    lag_minutes: float | None  # None: never synced


@dataclass
class Dashboard:
    filters: DashboardFilters
    today: date  # the site's date; leads "today" use it
    accounts: list[AccountRow]  # every account (the filter offers them all)
    scoped_accounts: list[AccountRow]
    tiles: list[CurrencyTile]
    leads_today: dict[str, int]
    open_alerts: dict[str, int] | None  # by severity; None when the alerts app is not installed
    spend: list[SpendSeries]
    pacing: list[PacingRow]
    conversion_outcomes: dict[str, list[int]]  # final status → count per day
    leads_by_priority: dict[str, list[int]]  # priority → count per day
    sync_lag: list[SyncLagRow]
    syncs_in_progress: int = 0
    notes: list[str] = field(default_factory=list)
    attention: Attention | None = None

    @property
    def open_alert_total(self) -> int | None:
        return None if self.open_alerts is None else sum(self.open_alerts.values())

    @property
    def upload_success_rate(self) -> float | None:
        finished = sum(sum(counts) for counts in self.conversion_outcomes.values())
        uploaded = sum(self.conversion_outcomes.get(Conversion.Status.UPLOADED, []))
        return round(100 * uploaded / finished, 1) if finished else None


# --- Optional models (optimization) -----------------------------------------------------------------


def optional_model(app_label: str, model_name: str):
    """A model of an app that may not be installed (or not migrated to have it yet)."""
    if not apps.is_installed(app_label):
        return None
    try:
        return apps.get_model(app_label, model_name)
    except LookupError:
        return None


# --- The six queries ------------------------------------------------------------------------------


def dashboard_accounts(*, visible_account_ids: frozenset[int] | None = None) -> list[AccountRow]:
    """Query 1: every account the viewer may see, its monthly cap, and its latest sync run."""
    latest = SyncRun.objects.filter(account=OuterRef("pk")).order_by("-created_at", "-id")
    fields: dict[str, Any] = {
        "latest_run_id": Subquery(latest.values("id")[:1]),
        "latest_run_status": Subquery(latest.values("status")[:1]),
        "latest_run_progress": Subquery(latest.values("progress")[:1]),
    }
    has_budget_settings = optional_model("optimization", "AccountBudgetSettings") is not None
    if has_budget_settings:
        fields["monthly_cap_micros"] = F("budget_settings__monthly_budget_micros")
    visible = AdAccount.objects.all()
    if visible_account_ids is not None:
        visible = visible.filter(pk__in=visible_account_ids)
    rows = visible.annotate(**fields).values(
        "id",
        "name",
        "platform",
        "currency_code",
        "time_zone",
        "is_active",
        "needs_attention",
        "last_synced_at",
        "sync_interval_minutes",
        *fields,
    )
    accounts = []
    for row in rows.order_by("platform", "name", "id"):
        row.setdefault("monthly_cap_micros", None)
        row["latest_run_progress"] = row["latest_run_progress"] or ""
        row["today"] = zone_today(row["time_zone"])
        accounts.append(AccountRow(**row))
    return accounts


def metrics_by_account_and_day(
    *, date_from: date, date_to: date, account_ids: list[int] | None
) -> dict[tuple[int, date], tuple[int, Decimal, int]]:
    """Query 2: (account, date) → (cost, conversions, conversion value), summed in SQL."""
    metrics = DailyMetric.objects.filter(date__gte=date_from, date__lte=date_to)
    if account_ids is not None:
        metrics = metrics.filter(campaign__account_id__in=account_ids)
    rows = (
        metrics.values("date", account_id=F("campaign__account_id"))
        .annotate(cost=Sum("cost_micros"), conversions=Sum("conversions"), value=Sum("conversion_value_micros"))
        .order_by()
    )
    return {
        (row["account_id"], row["date"]): (row["cost"] or 0, Decimal(row["conversions"] or 0), row["value"] or 0)
        for row in rows
    }


def daily_budgets_by_account(*, account_ids: list[int] | None) -> dict[int, int]:
    """Query 3: the sum of enabled campaigns' daily budgets per account.

    A Google budget shared by several campaigns is one budget: campaigns on it are grouped by
    the budget's id and counted once (Max), the others are summed.
    """
    campaigns = Campaign.objects.filter(status=CampaignStatus.ENABLED, daily_budget_micros__isnull=False)
    if account_ids is not None:
        campaigns = campaigns.filter(account_id__in=account_ids)
    shared_key = Case(When(budget_is_shared=True, then=F("budget_external_id")), default=Value(""))
    rows = (
        campaigns.values("account_id", budget_key=Coalesce(shared_key, Value(""), output_field=CharField()))
        .annotate(total=Sum("daily_budget_micros"), one=Max("daily_budget_micros"))
        .order_by()
    )
    budgets: dict[int, int] = defaultdict(int)
    for row in rows:
        budgets[row["account_id"]] += row["one"] if row["budget_key"] else row["total"]
    return dict(budgets)


def _day_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(date_from, time.min, tzinfo=tz),
        datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=tz),
    )


def conversion_outcomes_by_day(
    *, date_from: date, date_to: date, account_ids: list[int] | None
) -> dict[tuple[date, str], int]:
    """Query 4: conversions that finished (uploaded, rejected, failed, expired) per day and outcome.

    Dated by when they finished (updated_at), the same clock as ``upload_success_rate``.
    """
    start, end = _day_bounds(date_from, date_to)
    finished = Conversion.objects.filter(status__in=FINAL_STATUSES, updated_at__gte=start, updated_at__lt=end)
    if account_ids is not None:
        finished = finished.filter(account_id__in=account_ids)
    rows = finished.annotate(day=TruncDate("updated_at")).values("day", "status").annotate(n=Count("id")).order_by()
    return {(row["day"], row["status"]): row["n"] for row in rows}


def leads_by_day_and_priority(
    *, date_from: date, date_to: date, account_ids: list[int] | None
) -> dict[tuple[date, str], int]:
    """Query 5: real (not test) leads received per site day and priority (``account_ids`` None:
    every lead, those tied to no campaign included)."""
    start, end = _day_bounds(date_from, date_to)
    leads = Lead.objects.filter(is_test=False, received_at__gte=start, received_at__lt=end)
    if account_ids is not None:
        leads = leads.filter(campaign__account_id__in=account_ids)
    rows = leads.annotate(day=TruncDate("received_at")).values("day", "priority").annotate(n=Count("id")).order_by()
    return {(row["day"], row["priority"]): row["n"] for row in rows}


def _open_alerts(*, account_ids: list[int] | None, platform_wide: bool):
    """Open alerts the viewer may see, or None when the optimization app has no alerts (yet).

    ``account_ids`` None: every account's; ``platform_wide``: also those tied to no account (they
    concern every account, and are shown to people with a role on every account)."""
    alert_model = optional_model("optimization", "Alert")
    if alert_model is None:
        return None
    alerts = alert_model.objects.filter(resolved_at__isnull=True)
    if account_ids is not None:
        alerts = alerts.filter(
            Q(account_id__in=account_ids) | Q(account__isnull=True) if platform_wide else Q(account_id__in=account_ids)
        )
    elif not platform_wide:
        alerts = alerts.filter(account__isnull=False)
    return alerts


def open_alerts_by_severity(*, account_ids: list[int] | None, platform_wide: bool) -> dict[str, int] | None:
    """Query 6: open alerts per severity; None when the optimization app has no alerts (yet)."""
    alerts = _open_alerts(account_ids=account_ids, platform_wide=platform_wide)
    if alerts is None:
        return None
    rows = alerts.values("severity").annotate(n=Count("id")).order_by()
    return {row["severity"]: row["n"] for row in rows}


# --- What needs attention now: open alerts, platform outages, stuck pushes, the worker ------------

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


def _cached(key: str, timeout: int, compute):
    full_key = f"dashboard:{key}"
    found = cache.get(full_key)
    if found is None:
        found = compute()
        cache.set(full_key, found, timeout)
    return found


def dashboard_data(*, filters: DashboardFilters, accounts: list[AccountRow] | None = None) -> Dashboard:
    """Everything the dashboard shows: at most ten queries (one fewer when ``accounts`` is passed in,
    two fewer when the metrics and outcomes are cached)."""
    visible = filters.visible_account_ids
    if accounts is None:
        accounts = dashboard_accounts(visible_account_ids=visible)
    site_today = timezone.localdate()
    scoped = [a for a in accounts if filters.account_id in (None, a.id)]
    account_ids = None if filters.account_id is None and visible is None else [a.id for a in scoped]
    days = filters.days

    # One metrics read covers the chosen range and every account's month to date.
    account_todays = [a.today for a in scoped] or [site_today]
    window_from = min(filters.date_from, min(today.replace(day=1) for today in account_todays))
    window_to = max(filters.date_to, max(account_todays))
    metrics = _cached(
        f"metrics:g{campaign_cache_generation()}:{window_from}:{window_to}:{account_ids}",
        METRICS_CACHE_SECONDS,
        lambda: metrics_by_account_and_day(date_from=window_from, date_to=window_to, account_ids=account_ids),
    )
    budgets = daily_budgets_by_account(account_ids=account_ids)
    outcomes = _cached(
        f"outcomes:{filters.date_from}:{filters.date_to}:{account_ids}",
        OUTCOMES_CACHE_SECONDS,
        lambda: conversion_outcomes_by_day(
            date_from=filters.date_from, date_to=filters.date_to, account_ids=account_ids
        ),
    )
    lead_counts = leads_by_day_and_priority(
        date_from=min(filters.date_from, site_today),
        date_to=max(filters.date_to, site_today),
        account_ids=account_ids,
    )
    # Alerts of no account concern every account: shown beside one account's, to those who see every account.
    open_alerts = open_alerts_by_severity(account_ids=account_ids, platform_wide=visible is None)
    attention = dashboard_attention(
        account_ids=account_ids, platform_wide=visible is None, alert_total=sum((open_alerts or {}).values())
    )

    zero = (0, Decimal(0), 0)
    tiles: dict[str, dict[str, Any]] = {}
    spend_by_series: dict[tuple[str, str], list[int]] = {}
    budget_by_series: dict[tuple[str, str], int] = defaultdict(int)
    pacing: list[PacingRow] = []
    for account in scoped:
        tile = tiles.setdefault(
            account.currency_code,
            {"today": 0, "month": 0, "range": 0, "conversions": Decimal(0), "value": 0},
        )
        month_start = account.today.replace(day=1)
        month_spend = sum(
            metrics.get((account.id, month_start + timedelta(days=n)), zero)[0]
            for n in range((account.today - month_start).days + 1)
        )
        tile["today"] += metrics.get((account.id, account.today), zero)[0]
        tile["month"] += month_spend
        key = (account.platform, account.currency_code)
        series = spend_by_series.setdefault(key, [0] * len(days))
        for index, day in enumerate(days):
            cost, conversions, value = metrics.get((account.id, day), zero)
            series[index] += cost
            tile["range"] += cost
            tile["conversions"] += conversions
            tile["value"] += value
        daily_budget = budgets.get(account.id, 0)
        budget_by_series[key] += daily_budget
        pacing.append(_pacing_row(account, month_spend, daily_budget))

    leads_today = {priority: lead_counts.get((site_today, priority), 0) for priority in Priority.values}
    return Dashboard(
        filters=filters,
        today=site_today,
        accounts=accounts,
        scoped_accounts=scoped,
        tiles=[
            CurrencyTile(
                currency_code=currency,
                spend_today_micros=t["today"],
                spend_month_micros=t["month"],
                spend_range_micros=t["range"],
                conversions=t["conversions"],
                conversion_value_micros=t["value"],
            )
            for currency, t in sorted(tiles.items())
        ],
        leads_today=leads_today,
        open_alerts=open_alerts,
        spend=[
            SpendSeries(platform, currency, spend, budget_by_series[(platform, currency)])
            for (platform, currency), spend in sorted(spend_by_series.items())
        ],
        pacing=pacing,
        conversion_outcomes={
            status: [outcomes.get((day, status), 0) for day in days] for status in map(str, FINAL_STATUSES)
        },
        leads_by_priority={
            priority: [lead_counts.get((day, priority), 0) for day in days] for priority in Priority.values
        },
        sync_lag=[SyncLagRow(account, _lag_minutes(account)) for account in scoped],
        syncs_in_progress=sum(1 for a in scoped if a.sync_is_active),
        notes=routing_gaps(),
        attention=attention,
    )


def _pacing_row(account: AccountRow, month_spend: int, daily_budget: int) -> PacingRow:
    """Month-to-date spend against the monthly cap's share so far, else daily budgets × days elapsed."""
    days_elapsed = account.today.day
    if account.monthly_cap_micros:
        days_in_month = calendar.monthrange(account.today.year, account.today.month)[1]
        expected = account.monthly_cap_micros * days_elapsed // days_in_month
        basis = f"monthly cap × {days_elapsed}/{days_in_month} days"
        return PacingRow(account, month_spend, expected, account.monthly_cap_micros, basis)
    if daily_budget:
        return PacingRow(
            account, month_spend, daily_budget * days_elapsed, None, f"daily budgets × {days_elapsed} days"
        )
    return PacingRow(account, month_spend, None, None, "no cap or daily budget")


def _lag_minutes(account: AccountRow) -> float | None:
    if account.last_synced_at is None:
        return None
    return max((timezone.now() - account.last_synced_at).total_seconds() / 60, 0.0)


# --- Charts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartBlock:
    """One chart with its heading, its SVG, and the same numbers as a table."""

    chart_id: str
    heading: str
    svg: SafeString
    table_headers: list[str]
    table_rows: list[list[str]]
    note: str = ""


def _day_label(day: date) -> str:
    return day.strftime("%b %d").replace(" 0", " ")


def _money_value(currency: str):
    """A point's amount in full (its hover text), in the currency's own precision."""

    def format_value(micros: float) -> str:
        return format_money(int(micros), currency).removesuffix(f" {currency}")

    return format_value


def _money_tick(micros: float, step_micros: float) -> str:
    # The axis is in micros; its labels in units, as precise as the step (2.5k, 0.25).
    return charts.format_tick(micros / MICROS, step_micros / MICROS, compact=True)


def _percent_tick(value: float, step: float) -> str:
    return charts.format_tick(value, step, suffix="%")


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _lag_text(minutes: float) -> str:
    if minutes < 90:
        return f"{minutes:,.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:,.1f} h"
    return f"{minutes / 1440:,.1f} days"


def dashboard_charts(data: Dashboard) -> list[ChartBlock]:
    """The five charts: spend vs budget (one per platform and currency), pacing, uploads, leads, sync lag."""
    days = data.filters.days
    labels = [_day_label(day) for day in days]
    range_text = f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}"
    blocks: list[ChartBlock] = []

    for series in data.spend:
        platform = Platform(series.platform).label if series.platform in Platform.values else series.platform
        chart_id = f"chart-spend-{series.platform}-{series.currency_code.lower()}"
        total = sum(series.spend_micros)
        blocks.append(
            ChartBlock(
                chart_id=chart_id,
                heading=f"Daily spend vs daily budget — {platform}, {series.currency_code}",
                svg=charts.line_chart(
                    chart_id=chart_id,
                    title=f"Daily spend against daily budget, {platform}, {series.currency_code}",
                    desc=(
                        f"{range_text}: spend {format_money(total, series.currency_code)} in total; "
                        f"enabled daily budgets sum to {format_money(series.daily_budget_micros, series.currency_code)}."
                    ),
                    x_labels=labels,
                    series=[
                        charts.Series("Spend", series.spend_micros),
                        charts.Series(
                            "Daily budget (enabled now)", [series.daily_budget_micros] * len(days), reference=True
                        ),
                    ],
                    y_label=series.currency_code,
                    x_label="Day (account time zone)",
                    value_format=_money_value(series.currency_code),
                    tick_format=_money_tick,
                ),
                table_headers=["Day", "Spend", "Daily budget"],
                table_rows=[
                    [
                        f"{day:%Y-%m-%d}",
                        format_money(spend, series.currency_code),
                        format_money(series.daily_budget_micros, series.currency_code),
                    ]
                    for day, spend in zip(days, series.spend_micros, strict=True)
                ],
                note="Budgets are today's values; past changes are in Budget changes.",
            )
        )

    pacing_rows = [row for row in data.pacing if row.percent is not None]
    blocks.append(
        ChartBlock(
            chart_id="chart-pacing",
            heading="Pacing: month-to-date spend per account",
            svg=charts.hbar_chart(
                chart_id="chart-pacing",
                title="Pacing per account, month to date",
                desc="Each bar is the month's spend as a percentage of what the monthly cap (or, without one, "
                "the daily budgets) allows by today; the tick marks 100%.",
                rows=[
                    charts.HBar(
                        label=row.account.name,
                        value=row.percent or 0,
                        value_label=f"{row.percent:,.0f}% · {row.pace_label.removesuffix(' pace')} · "
                        f"{format_money(row.spend_month_micros, row.account.currency_code)}",
                        reference=100,
                        tone=row.tone,
                    )
                    for row in pacing_rows
                ],
                x_label="% of the allowance to date",
                tick_format=_percent_tick,
                reference_label="on pace (100%)",
                x_max=150.0,
            ),
            note=(
                f"Bar colours by severity: red far over pace (above {PACING_FAR_OVER:.0f}%), amber over "
                f"(above {PACING_OVER:.0f}%) or far under (below {PACING_UNDER:.0f}%), green on pace "
                f"({PACING_ON:.0f}–{PACING_OVER:.0f}%), blue under ({PACING_UNDER:.0f}–{PACING_ON:.0f}%)."
            ),
            table_headers=["Account", "Spend this month", "Allowed to date", "Monthly cap", "Pace", "Based on"],
            table_rows=[
                [
                    row.account.name,
                    format_money(row.spend_month_micros, row.account.currency_code),
                    format_money(row.expected_to_date_micros, row.account.currency_code),
                    format_money(row.cap_micros, row.account.currency_code),
                    "—" if row.percent is None else f"{row.percent:,.1f}% ({row.pace_label})",
                    row.basis,
                ]
                for row in data.pacing
            ],
        )
    )

    status_labels = dict(Conversion.Status.choices)
    outcome_series = [
        charts.Series(status_labels[status], counts) for status, counts in data.conversion_outcomes.items()
    ]
    rate = data.upload_success_rate
    blocks.append(
        ChartBlock(
            chart_id="chart-conversions",
            heading="Conversion uploads per day, by outcome",
            svg=charts.bar_chart(
                chart_id="chart-conversions",
                title="Conversion upload outcomes per day",
                desc=f"{range_text}: success rate "
                + ("n/a (nothing finished)" if rate is None else f"{rate}%")
                + ". Stacked bars by outcome.",
                x_labels=labels,
                series=outcome_series,
                y_label="Conversions",
                x_label="Day finished (site time zone)",
                value_format=_count,
                integer=True,
            ),
            table_headers=["Day", *(s.label for s in outcome_series), "Success rate"],
            table_rows=[
                [
                    f"{day:%Y-%m-%d}",
                    *(str(s.values[i]) for s in outcome_series),
                    _success_rate(data.conversion_outcomes, i),
                ]
                for i, day in enumerate(days)
            ],
        )
    )

    priority_labels = dict(Priority.choices)
    lead_series = [charts.Series(priority_labels[p], counts) for p, counts in data.leads_by_priority.items()]
    blocks.append(
        ChartBlock(
            chart_id="chart-leads",
            heading="Leads per day, by priority",
            svg=charts.bar_chart(
                chart_id="chart-leads",
                title="Leads per day by priority",
                desc=f"{range_text}: {sum(sum(s.values) for s in lead_series)} leads, stacked by priority.",
                x_labels=labels,
                series=lead_series,
                y_label="Leads",
                x_label="Day received (site time zone)",
                value_format=_count,
                integer=True,
            ),
            table_headers=["Day", *(s.label for s in lead_series)],
            table_rows=[[f"{day:%Y-%m-%d}", *(str(s.values[i]) for s in lead_series)] for i, day in enumerate(days)],
        )
    )

    lag_rows = [row for row in data.sync_lag if row.lag_minutes is not None]
    blocks.append(
        ChartBlock(
            chart_id="chart-sync-lag",
            heading="Sync lag per account",
            svg=charts.hbar_chart(
                chart_id="chart-sync-lag",
                title="Time since each account's last successful sync",
                desc="Bars are minutes since the last sync; the tick marks the account's sync interval.",
                rows=[
                    charts.HBar(
                        label=row.account.name,
                        value=row.lag_minutes,
                        value_label=_lag_text(row.lag_minutes)
                        + (" · syncing now" if row.account.sync_is_active else ""),
                        reference=row.account.sync_interval_minutes,
                    )
                    for row in lag_rows
                ],
                x_label="Minutes since the last sync",
                reference_label="sync interval",
            ),
            table_headers=["Account", "Last synced", "Lag", "Interval", "Latest run"],
            table_rows=[
                [
                    row.account.name,
                    row.account.last_synced_at.strftime("%Y-%m-%d %H:%M UTC")
                    if row.account.last_synced_at
                    else "never",
                    "—" if row.lag_minutes is None else _lag_text(row.lag_minutes),
                    f"{row.account.sync_interval_minutes} min",
                    " · ".join(filter(None, [row.account.latest_run_status or "—", row.account.latest_run_progress])),
                ]
                for row in data.sync_lag
            ],
        )
    )
    return blocks


def _success_rate(outcomes: dict[str, list[int]], index: int) -> str:
    finished = sum(counts[index] for counts in outcomes.values())
    if not finished:
        return "—"
    return f"{100 * outcomes.get(Conversion.Status.UPLOADED, [0] * (index + 1))[index] / finished:.0f}%"


# --- The admin index's context ----------------------------------------------------------------------


def dashboard_context(params: Mapping[str, Any], *, user: Any) -> dict[str, Any]:
    """What templates/admin/index.html shows: the filter form, tiles, charts; from the GET params,
    over the accounts ``user`` may see."""
    visible = access.visible_account_ids(user)
    visible = None if visible is None else frozenset(visible)
    accounts = dashboard_accounts(visible_account_ids=visible)
    # The default range ends on the latest of the accounts' todays (their metric dates), not the
    # site's: an account ahead of UTC has already begun a day the site's date would leave out.
    todays = [account.today for account in accounts if account.is_active]
    form = DashboardFilterForm(params, accounts=accounts, today=max(todays, default=timezone.localdate()))
    data = dashboard_data(filters=replace(form.filters(), visible_account_ids=visible), accounts=accounts)
    priority_labels = dict(Priority.choices)
    alert_labels = {"critical": "Critical", "warning": "Warning"}
    return {
        "dashboard": data,
        "dashboard_form": form,
        "dashboard_charts": dashboard_charts(data),
        "dashboard_leads_today": [(priority_labels[p], n) for p, n in data.leads_today.items()],
        "dashboard_alerts": (
            None
            if data.open_alerts is None
            else [(alert_labels.get(severity, severity.title()), n) for severity, n in sorted(data.open_alerts.items())]
        ),
    }
