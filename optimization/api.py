"""Budget changes, optimizer runs and alerts over the API; every write goes through services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from adsplatform.query_params import validated_query
from campaigns import access
from campaigns.models import AdAccount, Campaign
from optimization import selectors, services
from optimization.models import Alert, OptimizationRun


class BudgetRefused(APIException):
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


class ProposalConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, message: str) -> None:
        super().__init__(detail={"detail": message, "code": "not_proposed"})


class PlatformUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "platform_unavailable"


def _call_budget_service(function, **kwargs) -> OptimizationRun:
    try:
        return function(**kwargs)
    except DjangoValidationError as exc:
        raise BudgetRefused(exc) from exc
    except services.BudgetPlatformUnavailable as exc:
        raise PlatformUnavailable(str(exc)) from exc


# --- Shapes -----------------------------------------------------------------------------------


class OptimizationRunSerializer(serializers.ModelSerializer):
    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
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
            "campaign",
            "campaign_name",
            "account",
            "currency_code",
            "source",
            "status",
            "old_budget_micros",
            "new_budget_micros",
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
        help_text="The new daily budget in micros of the account currency (1 USD = 1,000,000)."
    )
    reason = serializers.CharField(allow_blank=True, help_text="Why; required, kept in the audit trail.")
    confirm_large_change = serializers.BooleanField(
        default=False, help_text="Required for a change beyond ±50% of the current budget."
    )
    confirm_shared_budget = serializers.BooleanField(
        default=False, help_text="Required when the Google budget is shared with other campaigns (all of them change)."
    )


class OptimizerRunRequestSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=True, help_text="true: only propose (status proposed); false: approve and push the proposals too."
    )
    account = serializers.PrimaryKeyRelatedField(
        queryset=AdAccount.objects.all(), required=False, help_text="One account; default every enabled account."
    )


class AlertSerializer(serializers.ModelSerializer):
    is_open = serializers.BooleanField(read_only=True)

    class Meta:
        model = Alert
        fields = (
            "id",
            "kind",
            "subject",
            "subject_label",
            "severity",
            "value",
            "threshold",
            "message",
            "details",
            "is_open",
            "opened_at",
            "last_seen_at",
            "resolved_at",
        )
        read_only_fields = fields


# --- Views ------------------------------------------------------------------------------------


class CampaignBudgetView(APIView):
    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="campaign_budget_change",
        summary="Change a campaign's daily budget",
        description=(
            "Every guard answers 400 naming the problem and how to fix it: not positive, above the "
            "account's cap, not a whole minimum currency unit, beyond ±50% without confirm_large_change, a "
            "removed campaign, a shared Google budget without confirm_shared_budget, a change already pending, "
            "or a budget changed on the platform since the last sync (read before any change). Accepted "
            "changes are pushed by a worker; the record's status becomes applied once the platform confirms, "
            "or failed with the platform's message."
        ),
        request=BudgetChangeRequestSerializer,
        responses={202: OptimizationRunSerializer},
        tags=["budgets"],
    )
    def post(self, request, campaign_id):
        campaign = get_object_or_404(
            access.scope_queryset(Campaign.objects.select_related("account"), request.user), pk=campaign_id
        )
        access.require_role(request.user, campaign.account_id, access.ADVERTISER)
        params = BudgetChangeRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        run = _call_budget_service(
            services.budget_change,
            campaign=campaign,
            new_micros=data["daily_budget_micros"],
            reason=data["reason"],
            actor=request.user,
            source=OptimizationRun.Source.API,
            confirm_large_change=data["confirm_large_change"],
            confirm_shared_budget=data["confirm_shared_budget"],
        )
        return Response(OptimizationRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunListParams(serializers.Serializer):
    campaign = serializers.UUIDField(required=False, help_text="Campaign id (UUID).")
    account = serializers.IntegerField(required=False, min_value=1, help_text="Ad account id.")
    status = serializers.ChoiceField(choices=OptimizationRun.Status.values, required=False)
    source = serializers.ChoiceField(choices=OptimizationRun.Source.values, required=False)


class OptimizationRunListView(generics.ListAPIView):
    serializer_class = OptimizationRunSerializer
    filter_backends = ()

    def get_queryset(self):
        params = validated_query(RunListParams, self.request)
        runs = selectors.run_list(
            campaign_id=params.get("campaign"),
            account_id=params.get("account"),
            status=params.get("status"),
            source=params.get("source"),
        )
        return access.scope_queryset(runs, self.request.user, account_field="campaign__account")

    @extend_schema(
        operation_id="optimization_run_list",
        summary="Budget changes and optimizer proposals, newest first",
        parameters=[RunListParams],
        tags=["budgets"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="optimization_run_create",
        summary="Run the optimizer now",
        description=(
            "Proposes budget changes (reallocation toward the target CPA/ROAS, pacing to the monthly cap) as "
            "runs in status proposed, superseding older open proposals. With dry_run=false they are also "
            "approved and pushed."
        ),
        request=OptimizerRunRequestSerializer,
        responses={
            201: inline_serializer(
                "OptimizerRunResult",
                {"count": serializers.IntegerField(), "results": OptimizationRunSerializer(many=True)},
            )
        },
        tags=["budgets"],
    )
    def post(self, request, *args, **kwargs):
        params = OptimizerRunRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        account = params.validated_data.get("account")
        if account is not None:
            access.require_role(request.user, account.pk, access.ADVERTISER)
            accounts = [account]
        else:  # every account the caller may change budgets on
            accounts = list(
                access.scope_queryset(
                    selectors.optimizer_accounts(), request.user, account_field="pk", role=access.ADVERTISER
                )
            )
            if not accounts:
                access.require_role(request.user, None, access.ADVERTISER)
        runs: list[OptimizationRun] = []
        for each in accounts:
            runs += services.optimizer_run(account=each, actor=request.user, apply=not params.validated_data["dry_run"])
        body: dict[str, Any] = {"count": len(runs), "results": OptimizationRunSerializer(runs, many=True).data}
        return Response(body, status=status.HTTP_201_CREATED)


class OptimizationRunApplyView(APIView):
    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="optimization_run_apply",
        summary="Approve an optimizer proposal and push it",
        description="409 unless the run is proposed; 400 when a budget guard refuses it now.",
        request=None,
        responses={202: OptimizationRunSerializer},
        tags=["budgets"],
    )
    def post(self, request, pk: int):
        run = get_object_or_404(
            access.scope_queryset(
                OptimizationRun.objects.select_related("campaign"), request.user, account_field="campaign__account"
            ),
            pk=pk,
        )
        access.require_role(request.user, run.campaign.account_id, access.ADVERTISER)
        if run.status != OptimizationRun.Status.PROPOSED:
            raise ProposalConflict(f"Only proposed changes can be applied; #{run.pk} is {run.status}.")
        run = _call_budget_service(services.proposal_approve, run=run, actor=request.user)
        return Response(OptimizationRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class AlertListParams(serializers.Serializer):
    state = serializers.ChoiceField(choices=["open", "resolved"], required=False)
    kind = serializers.ChoiceField(choices=Alert.Kind.values, required=False)


class AlertListView(generics.ListAPIView):
    serializer_class = AlertSerializer
    filter_backends = ()

    def get_queryset(self):
        params = validated_query(AlertListParams, self.request)
        return access.scope_queryset(
            selectors.alert_list(state=params.get("state"), kind=params.get("kind")), self.request.user
        )

    @extend_schema(
        operation_id="alert_list",
        summary="Open alerts first, then those resolved in the last 7 days",
        parameters=[AlertListParams],
        tags=["alerts"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


urlpatterns = [
    path("campaigns/<uuid:campaign_id>/budget/", CampaignBudgetView.as_view(), name="campaign-budget"),
    path("optimization/runs/", OptimizationRunListView.as_view(), name="optimization-run-list"),
    path("optimization/runs/<int:pk>/apply/", OptimizationRunApplyView.as_view(), name="optimization-run-apply"),
    path("alerts/", AlertListView.as_view(), name="alert-list"),
]
