"""Reads of the optimization app: budget history, proposals, spend for alerts and the optimizer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import cast
from uuid import UUID

from django.db.models import BigIntegerField, Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import AdAccount, AdGroup, Campaign, CampaignStatus
from optimization.models import AccountBudgetSettings, Alert, OptimizationRun, PlatformCallRecord

# How long resolved alerts stay in the API's "recent" list.
RECENT_ALERT_DAYS = 7


# --- Budget changes -----------------------------------------------------------------------------


def run_list(
    *,
    campaign_id: str | None = None,
    account_id: int | None = None,
    status: str | None = None,
    source: str | None = None,
) -> QuerySet[OptimizationRun]:
    runs = OptimizationRun.objects.select_related("campaign__account", "requested_by", "decided_by")
    if campaign_id:
        runs = runs.filter(campaign_id=campaign_id)
    if account_id:
        runs = runs.filter(campaign__account_id=account_id)
    if status:
        runs = runs.filter(status=status)
    if source:
        runs = runs.filter(source=source)
    return runs.order_by("-created_at", "-id")


def campaign_budget_history(*, campaign: Campaign, limit: int = 20) -> list[OptimizationRun]:
    return list(run_list(campaign_id=str(campaign.pk))[:limit])


def pending_run_for(*, campaign: Campaign) -> OptimizationRun | None:
    """A change of the campaign itself still being pushed (its ad groups' changes are apart)."""
    return pending_change_for(campaign=campaign, ad_group=None)


def pending_change_for(*, campaign: Campaign, ad_group: AdGroup | None = None) -> OptimizationRun | None:
    """The change of this campaign (``ad_group`` None) or ad group still being pushed, if any."""
    runs = OptimizationRun.objects.filter(status=OptimizationRun.Status.PENDING)
    if ad_group is not None:
        return runs.filter(ad_group=ad_group).first()
    return runs.filter(campaign=campaign, ad_group__isnull=True).first()


def shared_budget_siblings(*, campaign: Campaign) -> list[Campaign]:
    """Other campaigns on the same Google budget: a change of one changes them all."""
    if not campaign.budget_external_id:
        return []
    return list(
        Campaign.objects.filter(account_id=campaign.account_id, budget_external_id=campaign.budget_external_id)
        .exclude(pk=campaign.pk)
        .order_by("name")
    )


def stale_pending_runs(*, grace_seconds: int = 300) -> list[OptimizationRun]:
    """Pending pushes nobody is working on: their message was lost, or their retry is overdue."""
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        OptimizationRun.objects.filter(status=OptimizationRun.Status.PENDING).filter(
            Q(next_attempt_at__isnull=True, updated_at__lt=cutoff) | Q(next_attempt_at__lt=cutoff)
        )
    )


@dataclass(frozen=True)
class ProposalImpact:
    account_id: int
    account_name: str
    currency_code: str
    proposals: int
    current_micros: int
    proposed_micros: int

    @property
    def change_micros(self) -> int:
        return self.proposed_micros - self.current_micros


def proposal_impact_by_account(
    *, run_ids: list[int] | None = None, account_ids: set[int] | None = None
) -> list[ProposalImpact]:
    """Open proposals summed per account (each account has one currency, so the sums are honest);
    ``account_ids``: only those accounts (None: every one)."""
    runs = OptimizationRun.objects.filter(status=OptimizationRun.Status.PROPOSED)
    if account_ids is not None:
        runs = runs.filter(campaign__account_id__in=account_ids)
    if run_ids is not None:
        runs = runs.filter(pk__in=run_ids)
    rows = (
        runs.values("campaign__account_id", "campaign__account__name", "campaign__account__currency_code")
        .annotate(
            n=Count("id"),
            current=Coalesce(Sum("old_budget_micros"), Value(0), output_field=BigIntegerField()),
            proposed=Coalesce(Sum("new_budget_micros"), Value(0), output_field=BigIntegerField()),
        )
        .order_by("campaign__account__name")
    )
    return [
        ProposalImpact(
            account_id=row["campaign__account_id"],
            account_name=row["campaign__account__name"],
            currency_code=row["campaign__account__currency_code"],
            proposals=row["n"],
            current_micros=row["current"],
            proposed_micros=row["proposed"],
        )
        for row in rows
    ]


def account_budget_settings(*, account: AdAccount) -> AccountBudgetSettings | None:
    return AccountBudgetSettings.objects.filter(account=account).first()


def optimizer_accounts() -> QuerySet[AdAccount]:
    return AdAccount.objects.filter(is_active=True, budget_settings__optimizer_enabled=True).select_related(
        "budget_settings"
    )


# --- Spend ----------------------------------------------------------------------------------------

_DECIMAL = DecimalField(max_digits=24, decimal_places=4)


def _cost_between(date_from: date, date_to: date) -> Coalesce:
    return Coalesce(
        Sum(
            "daily_metrics__cost_micros",
            filter=Q(daily_metrics__date__gte=date_from, daily_metrics__date__lte=date_to),
        ),
        Value(0),
        output_field=BigIntegerField(),
    )


@dataclass(frozen=True)
class CampaignSpend:
    campaign_id: str
    name: str
    account_id: int
    currency_code: str
    daily_budget_micros: int
    spend_today_micros: int
    spend_month_micros: int  # from the 1st through today


def campaign_spend_for_alerts(*, account: AdAccount, today: date) -> list[CampaignSpend]:
    """Enabled campaigns with a daily budget, with today's and the month's spend (account dates)."""
    # daily_budget_micros__gt=0 leaves no NULL budget among the rows.
    rows = cast(
        QuerySet[Campaign, tuple[UUID, str, int, int, int]],
        Campaign.objects.filter(account=account, status=CampaignStatus.ENABLED, daily_budget_micros__gt=0)
        .annotate(spend_today=_cost_between(today, today), spend_month=_cost_between(today.replace(day=1), today))
        .values_list("id", "name", "daily_budget_micros", "spend_today", "spend_month")
        .order_by("name"),
    )
    return [
        CampaignSpend(str(pk), name, account.pk, account.currency_code, budget, today_spend, month_spend)
        for pk, name, budget, today_spend, month_spend in rows
    ]


def campaign_spend_summary(*, campaign: Campaign, today: date) -> dict[str, int]:
    """Today's, the month's and the last 7 days' spend of one campaign (the admin's pacing context)."""
    return Campaign.objects.filter(pk=campaign.pk).aggregate(
        today=_cost_between(today, today),
        month=_cost_between(today.replace(day=1), today),
        last_7_days=_cost_between(today - timedelta(days=6), today),
    )


@dataclass(frozen=True)
class CampaignPerformance:
    campaign_id: str
    name: str
    status: str
    daily_budget_micros: int | None
    budget_is_shared: bool
    cost_micros: int
    conversions: Decimal
    conversion_value_micros: int
    changed_today: bool


def campaign_performance(
    *, account: AdAccount, date_from: date, date_to: date, changed_since: datetime
) -> list[CampaignPerformance]:
    """Every campaign of the account with its window totals, and whether its budget moved recently."""
    window = Q(daily_metrics__date__gte=date_from, daily_metrics__date__lte=date_to)
    changed = set(
        OptimizationRun.objects.filter(campaign__account=account)
        .filter(
            Q(status=OptimizationRun.Status.PENDING)
            | Q(status=OptimizationRun.Status.APPLIED, applied_at__gte=changed_since)
        )
        .values_list("campaign_id", flat=True)
    )
    rows = (
        Campaign.objects.filter(account=account)
        .annotate(
            cost=Coalesce(Sum("daily_metrics__cost_micros", filter=window), Value(0), output_field=BigIntegerField()),
            conv=Coalesce(Sum("daily_metrics__conversions", filter=window), Value(0), output_field=_DECIMAL),
            value=Coalesce(
                Sum("daily_metrics__conversion_value_micros", filter=window), Value(0), output_field=BigIntegerField()
            ),
        )
        .values_list("id", "name", "status", "daily_budget_micros", "budget_is_shared", "cost", "conv", "value")
        .order_by("name")
    )
    return [
        CampaignPerformance(
            str(pk), name, status, budget, shared, cost, Decimal(conv), value, changed_today=pk in changed
        )
        for pk, name, status, budget, shared, cost, conv, value in rows
    ]


def account_spend_between(*, account: AdAccount, date_from: date, date_to: date) -> int:
    if date_from > date_to:
        return 0
    return Campaign.objects.filter(account=account).aggregate(total=_cost_between(date_from, date_to))["total"] or 0


# --- Alerts ---------------------------------------------------------------------------------------


def alert_list(*, state: str | None = None, kind: str | None = None) -> QuerySet[Alert]:
    """Open alerts and the recently resolved ones, open first, newest first."""
    recent = timezone.now() - timedelta(days=RECENT_ALERT_DAYS)
    alerts = Alert.objects.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=recent))
    if state == "open":
        alerts = alerts.filter(resolved_at__isnull=True)
    elif state == "resolved":
        alerts = alerts.filter(resolved_at__isnull=False)
    if kind:
        alerts = alerts.filter(kind=kind)
    return alerts.order_by(F("resolved_at").desc(nulls_first=True), "-opened_at", "-id")


def alerts_awaiting_notification() -> list[tuple[Alert, str]]:
    """Alerts whose open or resolve notification has not gone out yet, oldest first."""
    waiting: list[tuple[Alert, str]] = []
    for alert in Alert.objects.filter(open_notified_at__isnull=True).order_by("opened_at", "id"):
        waiting.append((alert, "opened"))
    for alert in Alert.objects.filter(resolved_at__isnull=False, resolve_notified_at__isnull=True).order_by(
        "resolved_at", "id"
    ):
        waiting.append((alert, "resolved"))
    return waiting


def open_alert_counts() -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for kind, severity, n in (
        Alert.objects.filter(resolved_at__isnull=True)
        .values_list("kind", "severity")
        .annotate(n=Count("id"))
        .values_list("kind", "severity", "n")
        .order_by()
    ):
        counts[(kind, severity)] = n
    return counts


@dataclass(frozen=True)
class PlatformCallStats:
    platform: str
    calls: int
    failures: int

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


def platform_call_stats(*, since: datetime) -> list[PlatformCallStats]:
    rows = (
        PlatformCallRecord.objects.filter(called_at__gte=since)
        .values("platform")
        .annotate(calls=Count("id"), failures=Count("id", filter=~Q(outcome="ok")))
        .order_by("platform")
    )
    return [PlatformCallStats(row["platform"], row["calls"], row["failures"]) for row in rows]
