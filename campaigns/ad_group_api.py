"""Google ad groups and Meta ad sets over the API: the level below campaigns, with its own metrics."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from adsplatform.query_params import validated_query
from campaigns import access, coverage, selectors
from campaigns.api import (
    AccountRefSerializer,
    DateRangeParams,
    MetricsSerializer,
    PageEnvelopeSerializer,
    metrics_of,
    page_envelope,
    require_page_exists,
)
from campaigns.models import CampaignStatus, Platform


class AdGroupListParams(DateRangeParams):
    campaign = serializers.UUIDField(required=False, help_text="Campaign id (UUID): its ad groups / ad sets.")
    account = serializers.IntegerField(required=False, min_value=1)
    platform = serializers.ChoiceField(choices=Platform.values, required=False)
    status = serializers.ChoiceField(choices=CampaignStatus.values, required=False)
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)


class AdGroupSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    campaign = serializers.UUIDField()
    campaign_name = serializers.CharField()
    platform = serializers.CharField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    daily_budget_micros = serializers.IntegerField(allow_null=True, help_text="Meta ad-set daily budget; else null.")
    lifetime_budget_micros = serializers.IntegerField(allow_null=True, help_text="Meta ad-set lifetime budget.")
    currency_code = serializers.CharField()
    account = AccountRefSerializer()
    synced_at = serializers.DateTimeField(allow_null=True)
    metrics = MetricsSerializer()
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    data_from = serializers.DateField(
        allow_null=True, help_text="First day of the window with synced data; null (and null metrics) when none."
    )


class AdGroupPageSerializer(PageEnvelopeSerializer):
    results = AdGroupSerializer(many=True)


def ad_group_row(row: dict[str, Any], filters: selectors.AdGroupFilters) -> dict[str, Any]:
    data_from = coverage.window_data_from(row["account__data_from"], filters.date_from, filters.date_to)
    return {
        "id": str(row["id"]),
        "campaign": str(row["campaign_id"]),
        "campaign_name": row["campaign__name"],
        "platform": row["platform"],
        "external_id": row["external_id"],
        "name": row["name"],
        "status": row["status"],
        "daily_budget_micros": row["daily_budget_micros"],
        "lifetime_budget_micros": row["lifetime_budget_micros"],
        "currency_code": row["account__currency_code"],
        "account": {"id": row["account_id"], "name": row["account__name"], "platform": row["platform"]},
        "synced_at": row["synced_at"],
        "metrics": metrics_of(row, has_data=data_from is not None),
        "date_from": filters.date_from,
        "date_to": filters.date_to,
        "data_from": data_from,
    }


class AdGroupListView(APIView):
    @extend_schema(
        operation_id="ad_groups_list",
        parameters=[AdGroupListParams],
        responses=AdGroupPageSerializer,
        summary="Google ad groups and Meta ad sets with their metrics for a date range",
        description=(
            "Ordered by campaign, then name. Metrics are the ad group's own rows; a campaign's totals come "
            "from the campaign rows the platform reports, so nothing is counted twice."
        ),
    )
    def get(self, request):
        params = validated_query(AdGroupListParams, request)
        visible = access.visible_account_ids(request.user)
        filters = selectors.AdGroupFilters(
            date_from=params["date_from"],
            date_to=params["date_to"],
            campaign_id=params.get("campaign"),
            account_id=params.get("account"),
            platform=params.get("platform"),
            status=params.get("status"),
            visible_account_ids=None if visible is None else frozenset(visible),
        )
        page, size = params["page"], params["page_size"]
        count = selectors.ad_group_queryset(filters).count()
        require_page_exists(page, size, count)
        rows = selectors.ad_group_page(filters=filters, offset=(page - 1) * size, limit=size)
        return Response(page_envelope(request, page, size, count, [ad_group_row(row, filters) for row in rows]))


urlpatterns = [
    path("ad-groups/", AdGroupListView.as_view(), name="ad-group-list"),
]
