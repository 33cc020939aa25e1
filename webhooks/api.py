"""Webhook receivers (Make.com/Zapier relay, Google Ads lead forms) and the leads API."""

from __future__ import annotations

from typing import Any

import django_filters
import orjson
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adsplatform.errors import error_body
from adsplatform.logging import access_log_identify_source
from campaigns import access
from webhooks import selectors, services
from webhooks.models import Lead, LeadDelivery, LeadStage, Priority, WebhookSource

# --- Errors the receivers answer with (shaped by adsplatform.errors) -----------------------


_ERROR = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.JSONField(allow_null=True),
            },
        )
    },
)
_RECEIPT = inline_serializer(
    "WebhookReceipt",
    {
        "status": serializers.ChoiceField(choices=["accepted", "duplicate"]),
        "id": serializers.IntegerField(help_text="The stored webhook event (the first copy for a duplicate)."),
    },
)
_ERROR_RESPONSES = {
    400: _ERROR,
    401: _ERROR,
    413: _ERROR,
    415: _ERROR,
}


def _read_body(request: HttpRequest, *, accepted: tuple[str, ...]) -> tuple[bytes, str, dict[str, Any]]:
    """The raw bytes (for signatures and the inbox), their content type and the object they hold.

    Raises ``services.WebhookBodyError`` for a body that would only fail later: it is refused here.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    raw_body = request.body  # already read (and size-checked) by BodySizeLimitMiddleware
    payload = services.webhook_body_parse(raw_body=raw_body, content_type=content_type, accepted=accepted)
    return raw_body, content_type, payload


class _ReceiverView(APIView):
    """A receiver: an APIView for the schema and for other methods, its POST answered by Django alone.

    A receiver reads the raw body and headers itself: no parser, authentication, permission,
    throttle or content negotiation of DRF applies to it, so DRF's request wrapper, negotiation
    and renderer would add only CPU (about a sixth of a receipt's, ``make bench``). POST goes
    straight to the handler with Django's request and answers JSON; any other method takes DRF's
    way (405 in the error shape, OPTIONS).
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        return self.post(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raise NotImplementedError


def _answer(data: dict[str, Any], http_status: int) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=http_status, content_type="application/json")


def _unauthorized(exc: services.WebhookAuthError) -> HttpResponse:
    return _answer(error_body("unauthorized", str(exc)), status.HTTP_401_UNAUTHORIZED)


def _refusal(exc: services.WebhookBodyError) -> HttpResponse:
    """415 for a content type we do not read, else 400; the error shape, with what was wrong."""
    http_status: int
    if isinstance(exc, services.WebhookMediaTypeError):
        http_status = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    else:
        http_status = status.HTTP_400_BAD_REQUEST
    message = str(exc)
    if exc.code == "parse_error":
        message = f"The request body is not valid JSON. {message}"
    return _answer(error_body(exc.code, message, exc.details or None), http_status)


def _headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _receipt(result: services.IngestResult, *, accepted_status: int) -> HttpResponse:
    if result.created:
        return _answer({"status": "accepted", "id": result.event_id}, accepted_status)
    return _answer({"status": "duplicate", "id": result.event_id}, status.HTTP_200_OK)


_FLAT_EXAMPLE = {
    "lead_id": "make-7f3a",
    "full_name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+1 650 555 0123",
    "campaign_id": "50000000000",
    "form_id": "40000000000",
    "gclid": "EAIaIQobChMI",
    "budget": "5000",
}


class RelayWebhookView(_ReceiverView):
    """Make.com / Zapier relay: authenticated by the source's secret, stored before the answer."""

    @extend_schema(
        operation_id="webhooks_zapier",
        summary="Receive a lead relayed by Make.com or Zapier",
        description=(
            "Lead fields, flat (lead_id, email, phone, full_name or first_name/last_name, campaign_id, "
            "form_id, gclid, an `answers` object or other keys as custom answers) or a relayed Google lead "
            "form body (user_column_data), as `application/json`, `application/x-www-form-urlencoded` or "
            "`multipart/form-data` (UTF-8, text fields only). Form keys are unflattened the way Make.com "
            "and Zapier flatten them: `answers[budget]` and `answers__budget` are `answers.budget`; "
            "`tags[]`, `tags[0]` or a repeated `tags` make a list. Authenticate with `X-Webhook-Secret`, or "
            "sign the raw body bytes as sent the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, "
            "`webhook-signature`; 5-minute tolerance). The event is stored as sent, before the answer; a "
            "repeat of the same lead_id (or webhook-id, or body) answers 200 `duplicate` with the first "
            "event's id. Strict JSON only (no NaN/Infinity, no lone surrogates); other content types: 415."
        ),
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/x-www-form-urlencoded": OpenApiTypes.OBJECT,
            "multipart/form-data": OpenApiTypes.OBJECT,
        },
        parameters=[
            OpenApiParameter("X-Webhook-Secret", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("webhook-id", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("webhook-timestamp", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("webhook-signature", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={202: _RECEIPT, 200: _RECEIPT, **_ERROR_RESPONSES},
        examples=[OpenApiExample("Flat lead", value=_FLAT_EXAMPLE, request_only=True)],
        tags=["webhooks"],
    )
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        headers = _headers(request)
        try:
            source = services.webhook_source_authenticate_relay(headers=headers, raw_body=request.body)
        except services.WebhookAuthError as exc:
            services.webhook_event_record_refusal(source_label="zapier", outcome="unauthorized")
            return _unauthorized(exc)
        access_log_identify_source(request, source.pk)
        try:
            raw_body, content_type, payload = _read_body(request, accepted=services.RELAY_MEDIA_TYPES)
        except services.WebhookBodyError as exc:
            services.webhook_event_record_refusal(source_label=source.name, outcome="invalid")
            return _refusal(exc)
        result = services.webhook_event_ingest(
            source=source, raw_body=raw_body, headers=headers, payload=payload, content_type=content_type
        )
        return _receipt(result, accepted_status=status.HTTP_202_ACCEPTED)


class GoogleLeadFormWebhookView(_ReceiverView):
    """Google Ads lead form webhook: the google_key in the body is the only credential."""

    @extend_schema(
        operation_id="webhooks_google_lead_form",
        summary="Receive a Google Ads lead form submission",
        description=(
            "Google's documented body: lead_id, api_version, form_id, campaign_id, google_key, is_test, "
            "gcl_id, adgroup_id, creative_id, user_column_data [{column_id, string_value, column_name}], "
            "asset_group_id, lead_stage, lead_submit_time. Unknown fields are ignored. Answers 200 for a "
            "new lead and for a repeat of a lead_id."
        ),
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: _RECEIPT, **_ERROR_RESPONSES},
        tags=["webhooks"],
    )
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            raw_body, content_type, payload = _read_body(request, accepted=services.GOOGLE_MEDIA_TYPES)
        except services.WebhookBodyError as exc:
            services.webhook_event_record_refusal(source_label="google-lead-form", outcome="invalid")
            return _refusal(exc)
        try:
            source = services.webhook_source_authenticate_google(google_key=payload.get("google_key"))
        except services.WebhookAuthError as exc:
            services.webhook_event_record_refusal(source_label="google-lead-form", outcome="unauthorized")
            return _unauthorized(exc)
        access_log_identify_source(request, source.pk)
        result = services.webhook_event_ingest(
            source=source, raw_body=raw_body, headers=_headers(request), payload=payload, content_type=content_type
        )
        # Google treats anything but 200 as a failure to retry.
        return _receipt(result, accepted_status=status.HTTP_200_OK)


# --- Leads -----------------------------------------------------------------------------------


class LeadDeliverySerializer(serializers.ModelSerializer):
    destination = serializers.CharField(source="destination.name")
    destination_kind = serializers.CharField(source="destination.kind")

    class Meta:
        model = LeadDelivery
        fields = (
            "destination",
            "destination_kind",
            "status",
            "attempts",
            "response_code",
            "last_error",
            "delivered_at",
            "updated_at",
        )
        read_only_fields = fields


class LeadSerializer(serializers.ModelSerializer):
    # The API field is named "source", which shadows Field.source (the attribute path) in the stubs.
    source = serializers.CharField(source="source.name", read_only=True)  # type: ignore[assignment]
    matched_rule = serializers.CharField(source="matched_rule.name", read_only=True, allow_null=True, default=None)
    deliveries = LeadDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Lead
        fields = (
            "id",
            "external_lead_id",
            "source",
            "priority",
            "stage",
            "stage_changed_at",
            "full_name",
            "email",
            "phone",
            "phone_raw",
            "gclid",
            "campaign",
            "campaign_external_id",
            "form_id",
            "adgroup_id",
            "creative_id",
            "asset_group_id",
            "custom_answers",
            "is_test",
            "submitted_at",
            "received_at",
            "processed_at",
            "matched_rule",
            "deliveries",
        )
        read_only_fields = fields


class LeadStageSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=LeadStage.choices)


class LeadFilter(django_filters.FilterSet):
    priority = django_filters.ChoiceFilter(choices=Priority.choices)
    stage = django_filters.ChoiceFilter(choices=LeadStage.choices)
    is_test = django_filters.BooleanFilter()
    source = django_filters.ModelChoiceFilter(
        field_name="source", to_field_name="name", queryset=WebhookSource.objects.all()
    )
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Lead
        fields = ("priority", "stage", "is_test", "source")


@extend_schema(tags=["leads"], summary="Leads, urgent first, with their deliveries")
class LeadListView(generics.ListAPIView):
    serializer_class = LeadSerializer
    filterset_class = LeadFilter

    def get_queryset(self):
        return _visible_leads(self.request)


def _visible_leads(request: Request):
    """Leads of the caller's accounts; a lead of no known campaign only for a role on every account."""
    return access.scope_queryset(selectors.lead_list(), request.user, account_field="campaign__account")


class LeadDetailView(generics.GenericAPIView):
    serializer_class = LeadSerializer

    def get_queryset(self):
        return _visible_leads(self.request)

    @extend_schema(tags=["leads"], summary="One lead")
    def get(self, request: Request, pk: int) -> Response:
        return Response(LeadSerializer(self.get_object()).data)

    @extend_schema(
        tags=["leads"],
        summary="Set a lead's stage",
        description="Reaching the conversion stage (LEAD_CONVERSION_STAGE, default qualified) or a later one "
        "(new < contacted < qualified < won) closes the loop once with a Google conversion whose order id is "
        "the lead id: a click conversion with the lead's gclid/gbraid/wbraid, else an enhanced conversion for "
        "leads from its hashed email and phone.",
        request=LeadStageSerializer,
        responses={200: LeadSerializer, 400: _ERROR, 404: _ERROR},
    )
    def patch(self, request: Request, pk: int) -> Response:
        lead = self.get_object()
        # Moving a lead may create a conversion: an advertiser's decision, like a budget.
        access.require_role(request.user, lead.campaign.account_id if lead.campaign_id else None, access.ADVERTISER)
        form = LeadStageSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.lead_stage_set(lead=lead, stage=form.validated_data["stage"], actor=request.user)
        return Response(LeadSerializer(self.get_queryset().get(pk=lead.pk)).data)


urlpatterns = [
    path("webhooks/zapier", RelayWebhookView.as_view(), name="webhook-zapier"),
    path("webhooks/google-lead-form", GoogleLeadFormWebhookView.as_view(), name="webhook-google-lead-form"),
    path("leads/", LeadListView.as_view(), name="lead-list"),
    path("leads/<int:pk>/", LeadDetailView.as_view(), name="lead-detail"),
]
