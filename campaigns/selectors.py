"""Reads of the campaigns app. Each returns a queryset or plain rows in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, cast

from django.db.models import (
    BigIntegerField,
    CharField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    FloatField,
    JSONField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce, JSONObject, NullIf

from campaigns import access
from campaigns.models import AdAccount, AdGroup, AdGroupDailyMetric, Campaign, DailyMetric, SyncRun

METRIC_FIELDS = ("impressions", "clicks", "cost_micros", "conversions", "conversion_value_micros")
_DECIMAL = DecimalField(max_digits=24, decimal_places=4)

# API ordering names → the annotated column they sort by.
ORDERINGS = {
    "name": "name",
    "cost": "cost_micros",
    "clicks": "clicks",
    "conversions": "conversions",
    "cpa": "cpa_sort",
    "roas": "roas_sort",
}


@dataclass(frozen=True)
class CampaignFilters:
    date_from: date
    date_to: date
    platform: str | None = None
    status: str | None = None
    account_id: int | None = None
    search: str | None = None
    ordering: str = "name"  # a key of ORDERINGS, optionally prefixed with "-"
    # The accounts the caller may see (campaigns.access.visible_account_ids); None: every account.
    visible_account_ids: frozenset[int] | None = None


def _window_sum(field: str, date_from: date, date_to: date) -> Coalesce:
    """The campaign's total of ``field`` over the window, as a correlated subquery.

    A subquery rather than a JOIN + GROUP BY: PostgreSQL evaluates it only for the rows
    that survive ORDER BY ... LIMIT when the order does not need it, so a page of 100
    campaigns sums 100 × 30 index entries instead of every campaign's window.
    """
    output = _DECIMAL if field == "conversions" else BigIntegerField()
    total = (
        DailyMetric.objects.filter(campaign=OuterRef("pk"), date__gte=date_from, date__lte=date_to)
        .order_by()
        .values("campaign")
        .annotate(total=Sum(field))
        .values("total")
    )
    return Coalesce(Subquery(total, output_field=output), Value(0), output_field=output)


def campaign_queryset(filters: CampaignFilters) -> QuerySet[Campaign]:
    """Campaigns matching the filters (no metrics): what the count query runs on."""
    queryset = Campaign.objects.all()
    if filters.platform:
        queryset = queryset.filter(platform=filters.platform)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.visible_account_ids is not None:
        queryset = queryset.filter(account_id__in=filters.visible_account_ids)
    if filters.account_id:
        queryset = queryset.filter(account_id=filters.account_id)
    if filters.search:
        queryset = queryset.filter(Q(name__icontains=filters.search) | Q(external_id=filters.search))
    return queryset


_CAMPAIGN_ROW_FIELDS = (
    "id",
    "platform",
    "external_id",
    "name",
    "status",
    "daily_budget_micros",
    "budget_micros",
    "synced_at",
    "account_id",
    "account__name",
    "account__platform",
    "account__currency_code",
    "account__data_from",
)
# Rows of .values(): plain dicts (django-stubs types literal field lists as TypedDicts, which these
# functions fill in with metric totals afterwards).
_Rows = QuerySet[Any, dict[str, Any]]
_NO_METRICS = {"impressions": 0, "clicks": 0, "cost_micros": 0, "conversions": Decimal(0), "conversion_value_micros": 0}


def _ordered(queryset: _Rows, ordering: str) -> _Rows:
    key = ordering.lstrip("-")
    column = F(ORDERINGS[key])
    order = column.desc(nulls_last=True) if ordering.startswith("-") else column.asc(nulls_last=True)
    return queryset.order_by(order, "id")


def _with_window_sums(filters: CampaignFilters) -> QuerySet[Campaign]:
    """The filtered campaigns with their window sums and the sort key of a metric ordering."""
    sums = {field: _window_sum(field, filters.date_from, filters.date_to) for field in METRIC_FIELDS}
    queryset = campaign_queryset(filters).annotate(**sums)
    key = filters.ordering.lstrip("-")
    if key == "cpa":
        queryset = queryset.annotate(
            cpa_sort=ExpressionWrapper(
                Cast(F("cost_micros"), FloatField()) / NullIf(Cast(F("conversions"), FloatField()), Value(0.0)),
                output_field=FloatField(),
            )
        )
    elif key == "roas":
        queryset = queryset.annotate(
            roas_sort=ExpressionWrapper(
                Cast(F("conversion_value_micros"), FloatField())
                / NullIf(Cast(F("cost_micros"), FloatField()), Value(0.0)),
                output_field=FloatField(),
            )
        )
    return queryset


def campaign_list(*, filters: CampaignFilters) -> _Rows:
    """Plain rows: each campaign with its account and window metrics, ordered; slice it to page."""
    return _ordered(_with_window_sums(filters).values(*_CAMPAIGN_ROW_FIELDS, *METRIC_FIELDS), filters.ordering)


def campaign_page_ids(*, filters: CampaignFilters, offset: int, limit: int) -> _Rows:
    """The ids of one page, in order (a subquery: the page's rows are read around it).

    Ordered by name, the sums are not needed to choose the page; a metric order needs every
    campaign's.
    """
    by_name = filters.ordering.lstrip("-") == "name"
    campaigns = campaign_queryset(filters) if by_name else _with_window_sums(filters)
    return _ordered(cast(_Rows, campaigns.values("pk")), filters.ordering)[offset : offset + limit]


def _window_totals_json(date_from: date, date_to: date) -> Subquery:
    """The campaign's five window totals as one JSON object: one correlated subquery, one index
    range of its days (five subqueries, what ordering by a metric needs, would read it five times).
    Conversions travel as text, so their Decimal survives JSON."""
    totals = (
        DailyMetric.objects.filter(campaign=OuterRef("pk"), date__gte=date_from, date__lte=date_to)
        .order_by()
        .values("campaign")
        .annotate(
            totals=JSONObject(
                **{field: Sum(field) for field in METRIC_FIELDS if field != "conversions"},
                conversions=Cast(Sum("conversions"), CharField()),
            )
        )
        .values("totals")
    )
    return Subquery(totals, output_field=JSONField())


def campaign_page(*, filters: CampaignFilters, offset: int, limit: int) -> list[dict[str, Any]]:
    """One page of ``campaign_list`` rows, in one query.

    Ordered by name, the page's rows come with their totals as one JSON value each, summed only
    for the rows of the page; a metric order
    needs every campaign's sums, which ``campaign_list`` computes.
    """
    if filters.ordering.lstrip("-") != "name":
        return list(campaign_list(filters=filters)[offset : offset + limit])
    # The page's ids chosen first: a deep page's skipped rows are never summed.
    page_ids = campaign_page_ids(filters=filters, offset=offset, limit=limit)
    queryset = Campaign.objects.filter(pk__in=page_ids).annotate(
        window=_window_totals_json(filters.date_from, filters.date_to)
    )
    rows = list(_ordered(queryset.values(*_CAMPAIGN_ROW_FIELDS, "window"), filters.ordering))
    for row in rows:
        totals = row.pop("window")
        row.update(_NO_METRICS if totals is None else {**totals, "conversions": Decimal(totals["conversions"])})
    return rows


def campaign_get(*, campaign_id: Any) -> Campaign:
    return Campaign.objects.select_related("account").get(pk=campaign_id)


def campaign_window_totals(*, campaign: Campaign, date_from: date, date_to: date) -> dict[str, Any]:
    totals = DailyMetric.objects.filter(campaign=campaign, date__gte=date_from, date__lte=date_to).aggregate(
        **{
            field: Coalesce(
                Sum(field), Value(0), output_field=_DECIMAL if field == "conversions" else BigIntegerField()
            )
            for field in METRIC_FIELDS
        }
    )
    return totals


def campaign_daily_series(*, campaign: Campaign, date_from: date, date_to: date) -> _Rows:
    series: _Rows = (
        DailyMetric.objects.filter(campaign=campaign, date__gte=date_from, date__lte=date_to)
        .order_by("date")
        .values("date", *METRIC_FIELDS)
    )
    return series


def summary_by_platform_and_currency(
    *,
    date_from: date,
    date_to: date,
    platform: str | None = None,
    account_id: int | None = None,
    visible_account_ids: frozenset[int] | None = None,
) -> list[dict[str, Any]]:
    """Totals per (platform, currency): money in different currencies is never added up."""
    metrics = DailyMetric.objects.filter(date__gte=date_from, date__lte=date_to)
    if visible_account_ids is not None:
        metrics = metrics.filter(campaign__account_id__in=visible_account_ids)
    if platform:
        metrics = metrics.filter(campaign__platform=platform)
    if account_id:
        metrics = metrics.filter(campaign__account_id=account_id)
    rows = cast(
        _Rows,
        metrics.values(platform=F("campaign__platform"), currency_code=F("campaign__account__currency_code"))
        .annotate(
            campaigns=Count("campaign", distinct=True),
            latest_data_from=Max("campaign__account__data_from"),
            **{field: Sum(field) for field in METRIC_FIELDS},
        )
        .order_by("platform", "currency_code"),
    )
    return list(rows)


def _half_up(numerator: int, denominator: int, places: int) -> float:
    """numerator / denominator rounded half up to ``places`` decimals, exactly (integers only):
    what PostgreSQL computes for the same page (campaigns.json_pages), to the last digit."""
    scale: int = 10**places
    rounded: int = (2 * numerator * scale + denominator) // (2 * denominator)
    return rounded / scale


def derived_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """CTR, CPC, CPA and ROAS from the sums; None where the denominator is zero."""
    impressions, clicks = row["impressions"] or 0, row["clicks"] or 0
    cost, value = row["cost_micros"] or 0, row["conversion_value_micros"] or 0
    conversions = Decimal(row["conversions"] or 0)
    return {
        "ctr": _half_up(clicks, impressions, 6) if impressions else None,
        "cpc_micros": cost // clicks if clicks else None,
        # Decimal's // truncates exactly (no float, no rounded quotient).
        "cpa_micros": int(Decimal(cost) // conversions) if conversions else None,
        "roas": _half_up(value, cost, 4) if cost else None,
    }


def account_list(*, user: Any) -> QuerySet[AdAccount]:
    accounts = access.visible_accounts(user)
    return accounts.annotate(campaign_count=Count("campaigns")).order_by("platform", "name")


def sync_run_list(*, user: Any, account_id: int | None = None, status: str | None = None) -> QuerySet[SyncRun]:
    runs = access.scope_queryset(SyncRun.objects.select_related("account"), user)
    if account_id:
        runs = runs.filter(account_id=account_id)
    if status:
        runs = runs.filter(status=status)
    return runs.order_by("-created_at")


# --- Ad groups / ad sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class AdGroupFilters:
    date_from: date
    date_to: date
    campaign_id: Any = None
    account_id: int | None = None
    platform: str | None = None
    status: str | None = None
    visible_account_ids: frozenset[int] | None = None


def ad_group_queryset(filters: AdGroupFilters) -> QuerySet[AdGroup]:
    queryset = AdGroup.objects.all()
    if filters.visible_account_ids is not None:
        queryset = queryset.filter(account_id__in=filters.visible_account_ids)
    if filters.campaign_id:
        queryset = queryset.filter(campaign_id=filters.campaign_id)
    if filters.account_id:
        queryset = queryset.filter(account_id=filters.account_id)
    if filters.platform:
        queryset = queryset.filter(platform=filters.platform)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    return queryset


def ad_group_page(*, filters: AdGroupFilters, offset: int, limit: int) -> list[dict[str, Any]]:
    """One page of ad groups (by campaign, then name) with their window totals: two queries."""
    rows: list[dict[str, Any]] = list(
        cast(
            _Rows,
            ad_group_queryset(filters)
            .order_by("campaign__name", "campaign_id", "name", "id")
            .values(
                "id",
                "campaign_id",
                "campaign__name",
                "platform",
                "external_id",
                "name",
                "status",
                "daily_budget_micros",
                "lifetime_budget_micros",
                "synced_at",
                "account_id",
                "account__name",
                "account__currency_code",
                "account__data_from",
            ),
        )[offset : offset + limit]
    )
    totals: dict[Any, Mapping[str, object]] = {
        total["ad_group_id"]: total
        for total in AdGroupDailyMetric.objects.filter(
            ad_group_id__in=[row["id"] for row in rows], date__gte=filters.date_from, date__lte=filters.date_to
        )
        .order_by()
        .values("ad_group_id")
        .annotate(**{name: Sum(name) for name in METRIC_FIELDS})
    }
    for row in rows:
        row.update({name: (totals.get(row["id"]) or _NO_METRICS)[name] for name in METRIC_FIELDS})
    return rows
