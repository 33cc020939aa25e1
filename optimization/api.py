"""Change records, optimizer runs and alerts over the API (the changes themselves: ``change_api``)."""

from __future__ import annotations

from typing import Any

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
from campaigns.models import AdAccount
from optimization import selectors, services
from optimization.change_api import OptimizationRunSerializer, call_change_service
from optimization.models import Alert, OptimizationRun


class ProposalConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, message: str) -> None:
        super().__init__(detail={"detail": message, "code": "not_proposed"})


# --- Shapes -----------------------------------------------------------------------------------


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


class RunListParams(serializers.Serializer):
    campaign = serializers.UUIDField(required=False, help_text="Campaign id (UUID).")
    account = serializers.IntegerField(required=False, min_value=1, help_text="Ad account id.")
    status = serializers.ChoiceField(choices=OptimizationRun.Status.values, required=False)
    # A query parameter named "source": the stubs take it for Field.source (the attribute path).
    source = serializers.ChoiceField(choices=OptimizationRun.Source.values, required=False)  # type: ignore[assignment]


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
        run = call_change_service(services.proposal_approve, run=run, actor=request.user)
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
    path("optimization/runs/", OptimizationRunListView.as_view(), name="optimization-run-list"),
    path("optimization/runs/<int:pk>/apply/", OptimizationRunApplyView.as_view(), name="optimization-run-apply"),
    path("alerts/", AlertListView.as_view(), name="alert-list"),
]
