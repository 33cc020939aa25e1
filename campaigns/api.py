"""The unified campaign API: served from PostgreSQL (and Redis), never from the ad platforms."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import orjson
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from adsplatform.query_params import validated_query
from campaigns import access, caching, coverage, json_pages, selectors, services
from campaigns.models import AccountRole, AdAccount, CampaignStatus, Platform, SyncRun

MAX_RANGE_DAYS = 400
# No ad platform reports earlier; it also keeps "date_to - 30 days" inside the calendar.
EARLIEST_DATE = date(2000, 1, 1)
DEFAULT_RANGE_DAYS = 30


# --- Query parameters ------------------------------------------------------------------------


class DateRangeParams(serializers.Serializer):
    date_from = serializers.DateField(required=False, help_text="First day (inclusive); default 30 days ago.")
    date_to = serializers.DateField(
        required=False, help_text="Last day (inclusive); default today, in the accounts' own time zones."
    )

    def default_date_to(self, attrs: dict[str, Any]) -> date:
        """Today where the accounts are (metric dates are theirs): the latest of them, or the chosen one's.

        The view may pass ``time_zones`` (account id or None → the zones) in the context: a cached read.
        """
        account_id = attrs.get("account")
        time_zones = self.context.get("time_zones") or (lambda pk: services.account_time_zones(account_id=pk))
        return services.latest_today(time_zones(account_id))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("date_from", "date_to"):
            if attrs.get(name) and attrs[name] < EARLIEST_DATE:
                raise serializers.ValidationError({name: [f"Must be on or after {EARLIEST_DATE.isoformat()}."]})
        date_to = attrs.get("date_to") or self.default_date_to(attrs)
        date_from = attrs.get("date_from") or date_to - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if date_from > date_to:
            raise serializers.ValidationError({"date_from": ["Must be on or before date_to."]})
        if (date_to - date_from).days + 1 > MAX_RANGE_DAYS:
            raise serializers.ValidationError({"date_to": [f"The range may cover at most {MAX_RANGE_DAYS} days."]})
        attrs["date_from"], attrs["date_to"] = date_from, date_to
        return attrs


class CampaignDateRangeParams(DateRangeParams):
    """The range of one campaign's numbers: by default it ends on its own account's today."""

    def default_date_to(self, attrs: dict[str, Any]) -> date:
        campaign_id = self.context.get("campaign_id")
        if campaign_id is None:
            return super().default_date_to(attrs)
        time_zone = AdAccount.objects.filter(campaigns__pk=campaign_id).values_list("time_zone", flat=True).first()
        return services.zone_today(time_zone) if time_zone is not None else super().default_date_to(attrs)


def _ordering_choices() -> list[str]:
    return [prefix + name for name in selectors.ORDERINGS for prefix in ("", "-")]


class CampaignListParams(DateRangeParams):
    platform = serializers.ChoiceField(choices=Platform.values, required=False)
    status = serializers.ChoiceField(choices=CampaignStatus.values, required=False)
    account = serializers.IntegerField(required=False, min_value=1)
    search = serializers.CharField(required=False, max_length=200)
    ordering = serializers.ChoiceField(choices=_ordering_choices(), required=False, default="name")
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)


class SummaryParams(DateRangeParams):
    platform = serializers.ChoiceField(choices=Platform.values, required=False)
    account = serializers.IntegerField(required=False, min_value=1)


# --- Response shapes (also the OpenAPI schema) ------------------------------------------------


class AccountRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    platform = serializers.CharField()


class MetricsSerializer(serializers.Serializer):
    """Totals of the window; every value is null when no day of it has synced data (``data_from`` null)."""

    impressions = serializers.IntegerField(allow_null=True)
    clicks = serializers.IntegerField(allow_null=True)
    cost_micros = serializers.IntegerField(allow_null=True)
    conversions = serializers.FloatField(allow_null=True)
    conversion_value_micros = serializers.IntegerField(allow_null=True)
    ctr = serializers.FloatField(allow_null=True)
    cpc_micros = serializers.IntegerField(allow_null=True)
    cpa_micros = serializers.IntegerField(allow_null=True)
    roas = serializers.FloatField(allow_null=True)


class CampaignSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    platform = serializers.CharField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    daily_budget_micros = serializers.IntegerField(allow_null=True)
    budget_micros = serializers.IntegerField(allow_null=True)
    currency_code = serializers.CharField()
    account = AccountRefSerializer()
    synced_at = serializers.DateTimeField(allow_null=True)
    metrics = MetricsSerializer()
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    data_from = serializers.DateField(
        allow_null=True,
        help_text="First day of the window with synced data (earlier days were never read: no data, not "
        "zero); null when no day of it has any, and then every metric is null.",
    )


class PageEnvelopeSerializer(serializers.Serializer):
    """The paging fields around a list's ``results`` (see ``page_envelope``); subclasses declare ``results``."""

    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)


class CampaignPageSerializer(PageEnvelopeSerializer):
    results = CampaignSerializer(many=True)


def metrics_of(row: dict[str, Any], has_data: bool = True) -> dict[str, Any]:
    """The window's metrics of ``row``; null values when no day of the window has synced data."""
    if not has_data:
        return dict(coverage.NO_METRICS)
    return {
        "impressions": row["impressions"],
        "clicks": row["clicks"],
        "cost_micros": row["cost_micros"],
        "conversions": float(row["conversions"]),
        "conversion_value_micros": row["conversion_value_micros"],
        **selectors.derived_metrics(row),
    }


def campaign_row(row: dict[str, Any], date_from: date, date_to: date) -> dict[str, Any]:
    data_from = coverage.window_data_from(row["account__data_from"], date_from, date_to)
    return {
        "id": str(row["id"]),
        "platform": row["platform"],
        "external_id": row["external_id"],
        "name": row["name"],
        "status": row["status"],
        "daily_budget_micros": row["daily_budget_micros"],
        "budget_micros": row["budget_micros"],
        "currency_code": row["account__currency_code"],
        "account": {"id": row["account_id"], "name": row["account__name"], "platform": row["account__platform"]},
        "synced_at": row["synced_at"],
        "metrics": metrics_of(row, has_data=data_from is not None),
        "date_from": date_from,
        "date_to": date_to,
        "data_from": data_from,
    }


# --- Pages ----------------------------------------------------------------------------------------


def require_page_exists(page: int, size: int, count: int) -> None:
    if page > 1 and (page - 1) * size >= count:
        raise NotFound(f"Page {page} is past the last page ({max(1, -(-count // size))}).")


def page_envelope(request, page: int, size: int, count: int, results: Any) -> dict[str, Any]:
    """The list answers' shape: count, page, page_size, links to the neighbours, results."""

    def page_url(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

    return {
        "count": count,
        "page": page,
        "page_size": size,
        "next": page_url(page + 1) if page * size < count else None,
        "previous": page_url(page - 1) if page > 1 else None,
        "results": results,
    }


# --- Access ---------------------------------------------------------------------------------------


def _visible_account_ids(request) -> frozenset[int] | None:
    visible = access.visible_account_ids(request.user)
    return None if visible is None else frozenset(visible)


def _caller_scope(request) -> str:
    """The accounts the caller sees, for cache keys: two users asking the same query see different rows."""
    visible = _visible_account_ids(request)
    return "all" if visible is None else ",".join(map(str, sorted(visible)))


# --- Caching with ETags ------------------------------------------------------------------------

# The parameters a campaign count depends on (not the window, the order or the page).
COUNT_PARAMETERS = ("platform", "status", "account", "search")


class _CachedAnswer:
    """A JSON answer cached under the sync generation with what building it needs (the accounts'
    time zones for the default window, optionally a count), all read in one round trip."""

    def __init__(self, request, scope: str, *, count_key: str | None = None) -> None:
        self.request = request
        self.key = caching.cache_key(scope, _caller_scope(request), request.GET.urlencode())
        self.count_key = count_key
        # The raw parameter names the key: the validated one is a function of it.
        self.zones_key = caching.cache_key("time-zones", request.GET.get("account", ""))
        self.values = caching.GenerationCache([self.key, self.zones_key, *([count_key] if count_key else [])])

    def time_zones(self, account_id: int | None) -> list[str]:
        return self.values.get_or_compute(self.zones_key, lambda: services.account_time_zones(account_id=account_id))

    def count(self, compute) -> int:
        return self.values.get_or_compute(self.count_key, compute) if self.count_key else compute()

    def response(self, build) -> HttpResponse:
        """``build()`` as JSON (from the cache when current) with an ETag; a matching If-None-Match
        gets 304 and no body. ``build`` runs only on a miss, validation included: a query that fails
        it is never cached, so a hit is a query that passed."""
        body = self.values.get(self.key)
        cache_status = "hit"
        if body is None:
            cache_status = "miss"
            # OPT_UTC_Z: UTC times end in "Z", as DRF writes them in the detail answers.
            body = self.values.get_or_compute(
                self.key, lambda: orjson.dumps(build(), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)
            )
            self.values.save()
        etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
        if etag in [tag.strip() for tag in self.request.headers.get("If-None-Match", "").split(",")]:
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=0, must-revalidate"
        response["X-Cache"] = cache_status
        return response


# --- Views ---------------------------------------------------------------------------------------


class CampaignListView(APIView):
    @extend_schema(
        operation_id="campaigns_list",
        parameters=[CampaignListParams],
        responses=CampaignPageSerializer,
        summary="Campaigns of both platforms with metrics for a date range",
    )
    def get(self, request):
        # The count depends on the filters only: paging, reordering or moving the window reuses it.
        count_key = caching.cache_key(
            "campaign-count", _caller_scope(request), *(request.GET.get(name, "") for name in COUNT_PARAMETERS)
        )
        answer = _CachedAnswer(request, "campaigns", count_key=count_key)
        return answer.response(lambda: self._page(request, answer))

    def _page(self, request, answer: _CachedAnswer) -> dict[str, Any]:
        params = validated_query(CampaignListParams, request, context={"time_zones": answer.time_zones})
        filters = selectors.CampaignFilters(
            date_from=params["date_from"],
            date_to=params["date_to"],
            platform=params.get("platform"),
            status=params.get("status"),
            account_id=params.get("account"),
            search=params.get("search"),
            ordering=params["ordering"],
            visible_account_ids=_visible_account_ids(request),
        )
        page, size = params["page"], params["page_size"]
        count = answer.count(lambda: selectors.campaign_queryset(filters).count())
        require_page_exists(page, size, count)
        offset = (page - 1) * size
        results: Any
        if json_pages.builds_json():
            # PostgreSQL writes the rows' JSON; orjson embeds it as it is.
            results = orjson.Fragment(json_pages.campaign_page_json(filters=filters, offset=offset, limit=size))
        else:
            rows = selectors.campaign_page(filters=filters, offset=offset, limit=size)
            results = [campaign_row(row, filters.date_from, filters.date_to) for row in rows]
        return page_envelope(request, page, size, count, results)


class CampaignListAliasView(CampaignListView):
    """The seed's original path (GET /api/campaigns), kept for clients written against it."""

    @extend_schema(
        operation_id="campaigns_list_alias",
        parameters=[CampaignListParams],
        responses=CampaignPageSerializer,
        deprecated=True,
        summary="Alias of GET /api/v1/campaigns/",
    )
    def get(self, request):
        return super().get(request)


class CampaignDetailView(APIView):
    @extend_schema(
        operation_id="campaigns_retrieve", parameters=[CampaignDateRangeParams], responses=CampaignSerializer
    )
    def get(self, request, campaign_id):
        params = validated_query(CampaignDateRangeParams, request, context={"campaign_id": campaign_id})
        campaign = get_object_or_404(
            selectors.campaign_queryset(_all_of(params, request)).select_related("account"), pk=campaign_id
        )
        totals = selectors.campaign_window_totals(
            campaign=campaign, date_from=params["date_from"], date_to=params["date_to"]
        )
        row = {
            "id": campaign.id,
            "platform": campaign.platform,
            "external_id": campaign.external_id,
            "name": campaign.name,
            "status": campaign.status,
            "daily_budget_micros": campaign.daily_budget_micros,
            "budget_micros": campaign.budget_micros,
            "synced_at": campaign.synced_at,
            "account_id": campaign.account_id,
            "account__name": campaign.account.name,
            "account__platform": campaign.account.platform,
            "account__currency_code": campaign.account.currency_code,
            "account__data_from": campaign.account.data_from,
            **totals,
        }
        return Response(campaign_row(row, params["date_from"], params["date_to"]))


def _all_of(params: dict[str, Any], request) -> selectors.CampaignFilters:
    """Every campaign the caller may see: one of another account is a 404 like a missing one."""
    return selectors.CampaignFilters(
        date_from=params["date_from"], date_to=params["date_to"], visible_account_ids=_visible_account_ids(request)
    )


class CampaignMetricsView(APIView):
    @extend_schema(
        operation_id="campaigns_metrics",
        parameters=[CampaignDateRangeParams],
        responses=inline_serializer(
            "CampaignDailySeries",
            {
                "campaign_id": serializers.UUIDField(),
                "currency_code": serializers.CharField(),
                "data_from": serializers.DateField(
                    allow_null=True, help_text="The account's first synced day: earlier days have no data."
                ),
                "days": inline_serializer(
                    "CampaignDay",
                    {
                        "date": serializers.DateField(),
                        **{f: serializers.IntegerField(allow_null=True) for f in selectors.METRIC_FIELDS},
                        "conversions": serializers.FloatField(allow_null=True),
                        "has_data": serializers.BooleanField(
                            help_text="False before the first synced day: the metrics are null (unknown), not 0."
                        ),
                    },
                    many=True,
                ),
            },
        ),
        summary="Every day of the range; a synced day without activity is 0, a day never synced is null",
    )
    def get(self, request, campaign_id):
        params = validated_query(CampaignDateRangeParams, request, context={"campaign_id": campaign_id})
        campaign = get_object_or_404(
            selectors.campaign_queryset(_all_of(params, request)).select_related("account"), pk=campaign_id
        )
        rows = selectors.campaign_daily_series(
            campaign=campaign, date_from=params["date_from"], date_to=params["date_to"]
        )
        days = coverage.daily_series(
            list(rows),
            data_from=campaign.account.data_from,
            days=coverage.days_of(params["date_from"], params["date_to"]),
        )
        return Response(
            {
                "campaign_id": campaign.id,
                "currency_code": campaign.account.currency_code,
                "data_from": campaign.account.data_from,
                "days": days,
            }
        )


class SummaryView(APIView):
    @extend_schema(
        operation_id="summary",
        parameters=[SummaryParams],
        responses=inline_serializer(
            "Summary",
            {
                "date_from": serializers.DateField(),
                "date_to": serializers.DateField(),
                "totals": inline_serializer(
                    "SummaryRow",
                    {
                        "platform": serializers.CharField(),
                        "currency_code": serializers.CharField(),
                        "campaigns": serializers.IntegerField(),
                        "data_from": serializers.DateField(
                            help_text="First day of the range on which every account counted here has synced "
                            "data (an account's earlier days were never read)."
                        ),
                        **MetricsSerializer().get_fields(),
                    },
                    many=True,
                ),
            },
        ),
        summary="Totals per platform and per currency (never one sum across currencies)",
    )
    def get(self, request):
        answer = _CachedAnswer(request, "summary")

        def build() -> dict[str, Any]:
            params = validated_query(SummaryParams, request, context={"time_zones": answer.time_zones})
            rows = selectors.summary_by_platform_and_currency(
                date_from=params["date_from"],
                date_to=params["date_to"],
                platform=params.get("platform"),
                account_id=params.get("account"),
                visible_account_ids=_visible_account_ids(request),
            )
            totals = [
                {
                    "platform": r["platform"],
                    "currency_code": r["currency_code"],
                    "campaigns": r["campaigns"],
                    "data_from": max(r["latest_data_from"] or params["date_from"], params["date_from"]),
                    **metrics_of(r),
                }
                for r in rows
            ]
            return {"date_from": params["date_from"], "date_to": params["date_to"], "totals": totals}

        return answer.response(build)


class AccountSerializer(serializers.ModelSerializer):
    campaign_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = AdAccount
        fields = (
            "id",
            "platform",
            "external_id",
            "name",
            "currency_code",
            "time_zone",
            "manager_customer_id",
            "is_active",
            "sync_interval_minutes",
            "last_synced_at",
            "needs_attention",
            "attention_reason",
            "data_from",
            "campaign_count",
        )


class SyncRunSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    account_name = serializers.CharField(source="account.name", read_only=True)

    class Meta:
        model = SyncRun
        fields = (
            "id",
            "account",
            "account_name",
            "trigger",
            "status",
            "date_from",
            "date_to",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "campaigns_synced",
            "metric_rows_synced",
            "progress",
            "attempts",
            "next_attempt_at",
            "error_class",
            "error_message",
        )


class AccountListView(APIView):
    @extend_schema(operation_id="accounts_list", responses=AccountSerializer(many=True))
    def get(self, request):
        return Response(AccountSerializer(selectors.account_list(user=request.user), many=True).data)


class AccountSyncView(APIView):
    @extend_schema(operation_id="accounts_sync", request=None, responses={202: SyncRunSerializer})
    def post(self, request, account_id: int):
        account = get_object_or_404(access.visible_accounts(request.user), pk=account_id)
        access.require_role(request.user, account.pk, access.ADVERTISER)
        run = services.sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL)
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class SyncRunListParams(serializers.Serializer):
    account = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=SyncRun.Status.values, required=False)


class SyncRunListView(ListAPIView):
    """Sync history, newest first (paginated)."""

    serializer_class = SyncRunSerializer

    @extend_schema(operation_id="sync_runs_list", parameters=[SyncRunListParams])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = validated_query(SyncRunListParams, self.request)
        return selectors.sync_run_list(
            user=self.request.user, account_id=params.get("account"), status=params.get("status")
        )


class MeAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.CharField()
    external_id = serializers.CharField()
    role = serializers.ChoiceField(choices=AccountRole.values)


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    is_superuser = serializers.BooleanField()
    accounts = MeAccountSerializer(many=True)


class MeView(APIView):
    """Who the caller is and their role on each account they can see: what a frontend may show."""

    @extend_schema(operation_id="me", responses=MeSerializer)
    def get(self, request):
        accounts = [
            {"id": account.pk, "platform": account.platform, "external_id": account.external_id, "role": role}
            for account, role in access.accounts_with_roles(request.user)
        ]
        return Response(
            {"username": request.user.get_username(), "is_superuser": request.user.is_superuser, "accounts": accounts}
        )


urlpatterns = [
    path("campaigns/", CampaignListView.as_view(), name="campaign-list"),
    path("campaigns/<uuid:campaign_id>/", CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<uuid:campaign_id>/metrics/", CampaignMetricsView.as_view(), name="campaign-metrics"),
    path("summary/", SummaryView.as_view(), name="summary"),
    path("accounts/", AccountListView.as_view(), name="account-list"),
    path("accounts/<int:account_id>/sync/", AccountSyncView.as_view(), name="account-sync"),
    path("sync-runs/", SyncRunListView.as_view(), name="sync-run-list"),
    path("me/", MeView.as_view(), name="me"),
]
