"""The dashboard's aggregate queries: each one bounded whatever the data size, scoped to the
accounts the viewer may see."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db.models import Case, CharField, Count, F, Max, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from campaigns.models import AdAccount, Campaign, CampaignStatus, DailyMetric, Platform, SyncRun
from campaigns.services import zone_today
from conversions.models import Conversion
from conversions.selectors import FINAL_STATUSES
from webhooks.models import Lead

ACTIVE_SYNC_STATUSES = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
# Metrics change only through a sync, which bumps the generation the key carries; the timeout
# only bounds what a write that skips the sync (a hand edit in the admin) leaves stale.
METRICS_CACHE_SECONDS = 10 * 60
# Outcomes change with every upload batch; a minute behind is fine for a per-day trend.
OUTCOMES_CACHE_SECONDS = 60


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
    data_from: date | None = None  # its first synced day: earlier days have no data

    @property
    def platform_label(self) -> str:
        return Platform(self.platform).label if self.platform in Platform.values else self.platform

    @property
    def sync_is_active(self) -> bool:
        return self.latest_run_status in ACTIVE_SYNC_STATUSES


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
        "data_from",
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
