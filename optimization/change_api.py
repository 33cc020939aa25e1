"""Budget and status changes of campaigns and ad groups / ad sets over the API.

Four endpoints, one path underneath (``optimization.changes``): a real change answers 202 with
its change record, ``dry_run: true`` answers 200 with the platform's verdict and stores nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import access
from campaigns.models import AdGroup, Campaign
from optimization import changes
from optimization.models import OptimizationRun


class ChangeRefused(APIException):
    """A guard refused the change: 400 naming the problem, the field, and how to fix it."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "budget_refused"

    def __init__(self, error: DjangoValidationError) -> None:
        fields = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        code = "budget_refused"
        if hasattr(error, "error_dict"):
            first = next(iter(error.error_dict.values()))[0]
            code = first.code or code
        message = next(iter(fields.values()))[0]
        super().__init__(detail={"detail": message, "code": code, "fields": fields})


class PlatformUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "platform_unavailable"


def call_change_service(function, **kwargs) -> Any:
    try:
        return function(**kwargs)
    except DjangoValidationError as exc:
        raise ChangeRefused(exc) from exc
    except changes.BudgetPlatformUnavailable as exc:
        raise PlatformUnavailable(str(exc)) from exc


# --- Shapes -----------------------------------------------------------------------------------


class OptimizationRunSerializer(serializers.ModelSerializer):
    """A change record: what changes (``kind``) on what (``level``, ``campaign``, ``ad_group``)."""

    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
    ad_group_name = serializers.CharField(source="ad_group.name", read_only=True, allow_null=True, default=None)
    account = serializers.IntegerField(source="campaign.account_id", read_only=True)
    currency_code = serializers.CharField(source="campaign.account.currency_code", read_only=True)
    # Names as they were when the change was made: they outlive the users (null: nobody, e.g. the optimizer).
    requested_by = serializers.SerializerMethodField()
    decided_by = serializers.SerializerMethodField()

    def get_requested_by(self, run: OptimizationRun) -> str | None:
        return run.requested_by_name or None

    def get_decided_by(self, run: OptimizationRun) -> str | None:
        return run.decided_by_name or None

    class Meta:
        model = OptimizationRun
        fields = (
            "id",
            "kind",
            "level",
            "campaign",
            "campaign_name",
            "ad_group",
            "ad_group_name",
            "account",
            "currency_code",
            "source",
            "status",
            "budget_period",
            "old_budget_micros",
            "new_budget_micros",
            "old_status",
            "new_status",
            "reason",
            "requested_by",
            "confirmed_large_change",
            "confirmed_shared_budget",
            "proposal_kind",
            "proposal_batch",
            "decided_by",
            "decided_at",
            "platform_response",
            "error_message",
            "push_attempts",
            "created_at",
            "updated_at",
            "applied_at",
            "finished_at",
        )
        read_only_fields = fields


class BudgetChangeRequestSerializer(serializers.Serializer):
    daily_budget_micros = serializers.IntegerField(
        required=False, help_text="The new daily budget in micros of the account currency (1 USD = 1,000,000)."
    )
    lifetime_budget_micros = serializers.IntegerField(
        required=False, help_text="The new lifetime budget in micros; for a campaign or ad set that has one."
    )
    reason = serializers.CharField(allow_blank=True, help_text="Why; required, kept in the audit trail.")
    confirm_large_change = serializers.BooleanField(
        default=False, help_text="Required for a change beyond ±50% of the current budget."
    )
    confirm_shared_budget = serializers.BooleanField(
        default=False, help_text="Required when the Google budget is shared with other campaigns (all of them change)."
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="true: check it with the platform's own validation and store nothing (200)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("daily_budget_micros", "lifetime_budget_micros") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"daily_budget_micros": ["Send exactly one of daily_budget_micros and lifetime_budget_micros."]}
            )
        attrs["period"] = OptimizationRun.BudgetPeriod.LIFETIME if given[0].startswith("lifetime") else "daily"
        attrs["new_micros"] = attrs[given[0]]
        return attrs


class StatusChangeRequestSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=list(changes.SETTABLE_STATUSES), help_text="enabled or paused.")
    reason = serializers.CharField(allow_blank=True, help_text="Why; required, kept in the audit trail.")
    dry_run = serializers.BooleanField(
        default=False, help_text="true: check it with the platform's own validation and store nothing (200)."
    )


PreviewSerializer = inline_serializer(
    "ChangePreview",
    {
        "valid": serializers.BooleanField(),
        "errors": serializers.ListField(child=serializers.DictField(child=serializers.CharField())),
        "change": serializers.DictField(),
    },
)


# --- Views ------------------------------------------------------------------------------------


def _target(request, *, campaign_id=None, ad_group_id=None) -> dict[str, Any]:
    """The object, if the caller may see it (else 404) and change it (else 403)."""
    if ad_group_id is not None:
        ad_group = get_object_or_404(
            access.scope_queryset(AdGroup.objects.select_related("campaign", "account"), request.user),
            pk=ad_group_id,
        )
        access.require_role(request.user, ad_group.account_id, access.ADVERTISER)
        return {"ad_group": ad_group}
    campaign = get_object_or_404(
        access.scope_queryset(Campaign.objects.select_related("account"), request.user), pk=campaign_id
    )
    access.require_role(request.user, campaign.account_id, access.ADVERTISER)
    return {"campaign": campaign}


BUDGET_DESCRIPTION = (
    "Daily or lifetime budget, on a campaign (Google; Meta campaign budget) or a Meta ad set (ad-set "
    "budgets). Every guard answers 400 naming the problem and how to fix it: not positive, not a whole "
    "minimum currency unit, below the platform's minimum daily budget, above the account's cap, a lifetime "
    "budget without an end or below what is already spent, the budget living elsewhere (campaign vs ad "
    "sets; Google ad groups have none), beyond ±50% without confirm_large_change, a shared Google budget "
    "without confirm_shared_budget, a change already pending, or a value changed on the platform since the "
    "last sync. Accepted changes are pushed by a worker; the record becomes applied once the platform "
    "confirms, or failed with the platform's message. dry_run: true asks the platform to validate it "
    "(Google validate_only, Meta execution_options=validate_only) and stores nothing."
)
STATUS_DESCRIPTION = (
    "Pause or enable a campaign or ad group / ad set through the same audited path as budgets: a change "
    "record with who, why, old → new, applied only when the platform confirms and read back by the next "
    "sync. dry_run: true asks the platform to validate it and stores nothing."
)


class _BudgetView(APIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request, **kwargs):
        target = _target(request, **kwargs)
        params = BudgetChangeRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        common = {
            **target,
            "new_micros": data["new_micros"],
            "period": data["period"],
            "reason": data["reason"],
            "confirm_large_change": data["confirm_large_change"],
            "confirm_shared_budget": data["confirm_shared_budget"],
        }
        if data["dry_run"]:
            preview = call_change_service(changes.budget_change_preview, **common)
            return Response(preview.as_dict(), status=status.HTTP_200_OK)
        run = call_change_service(
            changes.budget_change, **common, actor=request.user, source=OptimizationRun.Source.API
        )
        return Response(OptimizationRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class _StatusView(APIView):
    permission_classes = (IsAuthenticated,)

    def post(self, request, **kwargs):
        target = _target(request, **kwargs)
        params = StatusChangeRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        common = {**target, "new_status": data["status"], "reason": data["reason"]}
        if data["dry_run"]:
            preview = call_change_service(changes.status_change_preview, **common)
            return Response(preview.as_dict(), status=status.HTTP_200_OK)
        run = call_change_service(
            changes.status_change, **common, actor=request.user, source=OptimizationRun.Source.API
        )
        return Response(OptimizationRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _schema(operation_id: str, summary: str, description: str, request_serializer):
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description,
        request=request_serializer,
        responses={202: OptimizationRunSerializer, 200: PreviewSerializer},
        tags=["budgets"],
    )


class CampaignBudgetView(_BudgetView):
    @_schema("campaign_budget_change", "Change a campaign's budget", BUDGET_DESCRIPTION, BudgetChangeRequestSerializer)
    def post(self, request, campaign_id):
        return super().post(request, campaign_id=campaign_id)


class AdGroupBudgetView(_BudgetView):
    @_schema("ad_group_budget_change", "Change an ad set's budget", BUDGET_DESCRIPTION, BudgetChangeRequestSerializer)
    def post(self, request, ad_group_id):
        return super().post(request, ad_group_id=ad_group_id)


class CampaignStatusView(_StatusView):
    @_schema("campaign_status_change", "Pause or enable a campaign", STATUS_DESCRIPTION, StatusChangeRequestSerializer)
    def post(self, request, campaign_id):
        return super().post(request, campaign_id=campaign_id)


class AdGroupStatusView(_StatusView):
    @_schema(
        "ad_group_status_change",
        "Pause or enable an ad group / ad set",
        STATUS_DESCRIPTION,
        StatusChangeRequestSerializer,
    )
    def post(self, request, ad_group_id):
        return super().post(request, ad_group_id=ad_group_id)


urlpatterns = [
    path("campaigns/<uuid:campaign_id>/budget/", CampaignBudgetView.as_view(), name="campaign-budget"),
    path("campaigns/<uuid:campaign_id>/status/", CampaignStatusView.as_view(), name="campaign-status"),
    path("ad-groups/<uuid:ad_group_id>/budget/", AdGroupBudgetView.as_view(), name="ad-group-budget"),
    path("ad-groups/<uuid:ad_group_id>/status/", AdGroupStatusView.as_view(), name="ad-group-status"),
]
