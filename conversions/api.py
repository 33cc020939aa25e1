"""Conversion ingestion (Google click conversions, Meta Conversions API events), the ledger, actions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import django_filters
from django import forms
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import access
from campaigns.authentication import JWTWithRolesAuthentication
from campaigns.models import Platform
from conversions import selectors, services
from conversions.authentication import (
    ServiceKeyAuthentication,
    ServicePrincipal,
    require_service_scope,
    service_key_accounts_only,
)
from conversions.models import Conversion, ConversionAction, ServiceScope
from platforms.base import MICROS_PER_UNIT

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A repeat with the same key answers 200 with the first records and stores nothing.",
)


# --- Input shapes -----------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.DATETIME)
class OffsetDateTimeField(serializers.Field):
    """ISO 8601 with a UTC offset: the moment it happened, never guessed in some time zone."""

    default_error_messages = {
        "invalid": "Use ISO 8601 with an offset, e.g. 2026-05-01T13:45:00+02:00.",
        "naive": "Give the UTC offset (e.g. +02:00 or Z): without it the moment is ambiguous.",
        "out_of_range": "This moment is outside the calendar (before year 1 or after 9999 in UTC).",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            moment = datetime.fromisoformat(data.strip())
        except ValueError:
            self.fail("invalid")
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.fail("naive")
        try:
            # 0001-01-01T00:00+02:00 parses, but is a moment before year 1: stored, it could
            # never be read back.
            moment.astimezone(UTC)
        except OverflowError:
            self.fail("out_of_range")
        return moment

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class CurrencyField(serializers.RegexField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"invalid": "Use an ISO 4217 code, e.g. USD."})
        super().__init__(r"^[A-Za-z]{3}$", **kwargs)


class GoogleUserSerializer(serializers.Serializer):
    # CharFields, not EmailField: error messages must never repeat a raw identifier.
    email = serializers.CharField(required=False, allow_blank=True, max_length=320, trim_whitespace=False)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    country = serializers.CharField(
        required=False, allow_blank=True, max_length=2, help_text="ISO alpha-2; lets a national phone number be read."
    )


@extend_schema_field({"type": "string", "description": "GRANTED or DENIED (any case).", "example": "GRANTED"})
class ConsentField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data).upper()
        if value not in ("GRANTED", "DENIED"):
            raise serializers.ValidationError("Use GRANTED or DENIED.")
        return value


class ConsentSerializer(serializers.Serializer):
    ad_user_data = ConsentField(required=False)
    ad_personalization = ConsentField(required=False)


class GoogleConversionInSerializer(serializers.Serializer):
    """At most one click id; without one, ``user.email`` and/or ``user.phone`` make it an enhanced
    conversion for leads, which Google matches on the hashed identifiers (checked by the service)."""

    gclid = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=512,
        help_text="At most one of gclid, gbraid, wbraid. With none, give user.email and/or user.phone: "
        "an enhanced conversion for leads.",
    )
    gbraid = serializers.CharField(required=False, allow_blank=True, max_length=512)
    wbraid = serializers.CharField(required=False, allow_blank=True, max_length=512)
    conversion_action = serializers.CharField(
        max_length=255, help_text="Google's conversion action id, its resource name, or our id."
    )
    conversion_date_time = OffsetDateTimeField()
    conversion_value = serializers.DecimalField(
        max_digits=18, decimal_places=6, min_value=Decimal(0), required=False, allow_null=True
    )
    currency_code = CurrencyField(required=False)
    order_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    user = GoogleUserSerializer(required=False)
    consent = ConsentSerializer(required=False)


class MetaUserSerializer(serializers.Serializer):
    email = serializers.CharField(required=False, allow_blank=True, max_length=320, trim_whitespace=False)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    city = serializers.CharField(required=False, allow_blank=True, max_length=255)
    state = serializers.CharField(required=False, allow_blank=True, max_length=255)
    zip = serializers.CharField(required=False, allow_blank=True, max_length=32)
    country = serializers.CharField(required=False, allow_blank=True, max_length=64)
    date_of_birth = serializers.CharField(required=False, allow_blank=True, max_length=64)
    gender = serializers.CharField(required=False, allow_blank=True, max_length=16)
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    client_ip_address = serializers.IPAddressField(required=False, allow_blank=True)
    client_user_agent = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    fbc = serializers.CharField(required=False, allow_blank=True, max_length=512)
    fbp = serializers.CharField(required=False, allow_blank=True, max_length=512)


class MetaCustomDataSerializer(serializers.Serializer):
    value = serializers.DecimalField(
        max_digits=18, decimal_places=6, min_value=Decimal(0), required=False, allow_null=True
    )
    currency = CurrencyField(required=False)
    order_id = serializers.CharField(required=False, allow_blank=True, max_length=255)


class MetaEventInSerializer(serializers.Serializer):
    event_name = serializers.CharField(max_length=100)
    event_time = serializers.IntegerField(min_value=0, help_text="Unix seconds; within the last 7 days.")
    event_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    action_source = serializers.CharField(max_length=32)
    event_source_url = serializers.URLField(required=False, allow_blank=True, max_length=2048)
    user = MetaUserSerializer()
    custom_data = MetaCustomDataSerializer(required=False)
    conversion_action = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="The pixel id; optional when only one is set up."
    )


# --- Output shapes ----------------------------------------------------------------------------------


class ConversionSerializer(serializers.ModelSerializer):
    account_external_id = serializers.CharField(source="account.external_id", read_only=True)
    conversion_action = serializers.IntegerField(source="action_id", read_only=True)
    conversion_action_external_id = serializers.CharField(source="action.external_id", read_only=True)
    # Not get_value: that name is Field.get_value, which a serializer used as a nested field relies on.
    value = serializers.SerializerMethodField(method_name="value_in_units")
    duplicate = serializers.SerializerMethodField()

    class Meta:
        model = Conversion
        fields = (
            "id",
            "platform",
            "account",
            "account_external_id",
            "conversion_action",
            "conversion_action_external_id",
            "status",
            "duplicate",
            "order_id",
            "event_name",
            "event_id",
            "click_id_type",
            "value",
            "currency_code",
            "occurred_at",
            "attempts",
            "next_attempt_at",
            "last_error",
            "platform_code",
            "platform_message",
            "uploaded_at",
            "request_id",
            "created_at",
        )
        read_only_fields = fields

    def value_in_units(self, conversion: Conversion) -> str | None:
        if conversion.value_micros is None:
            return None
        return str(Decimal(conversion.value_micros) / MICROS_PER_UNIT)

    def get_duplicate(self, conversion: Conversion) -> bool | None:
        """In an ingest answer: true when the item was already known (null in the ledger)."""
        return None


class ConversionActionSerializer(serializers.ModelSerializer):
    platform = serializers.CharField(source="account.platform", read_only=True)
    account_external_id = serializers.CharField(source="account.external_id", read_only=True)
    account_name = serializers.CharField(source="account.name", read_only=True)

    class Meta:
        model = ConversionAction
        fields = (
            "id",
            "platform",
            "account",
            "account_external_id",
            "account_name",
            "external_id",
            "resource_name",
            "name",
            "is_active",
        )
        read_only_fields = fields


# --- Ingestion views ------------------------------------------------------------------------------------


def _flatten(errors: Any, prefix: str) -> dict[str, list[str]]:
    """DRF's nested errors as ``{"conversions[3].user.email": ["…"]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            for sub, messages in _flatten(value, name).items():
                flat.setdefault(sub, []).extend(messages)
    elif isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        flat[prefix or "body"] = [str(e) for e in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            flat.update(_flatten(value, f"{prefix}[{index}]"))
    else:
        flat[prefix or "body"] = [str(errors)]
    return flat


class _IngestView(APIView):
    authentication_classes = [ServiceKeyAuthentication, JWTWithRolesAuthentication]
    permission_classes = [IsAuthenticated]
    item_serializer: type[serializers.Serializer]
    batch_key: str
    max_batch: int
    platform: str

    def ingest(self, *, items: list[dict[str, Any]], idempotency_key: str, source: str) -> services.IngestOutcome:
        raise NotImplementedError

    def action_reference(self, item: dict[str, Any]) -> str:
        return str(item.get("conversion_action") or "")

    def check_account_roles(self, request, items: list[dict[str, Any]]) -> None:
        """Before anything is stored: a person posting with a JWT needs the advertiser role on every
        account the batch writes to; a service key needs the conversions:write scope and, when it
        is limited to some accounts, every account of the batch among them."""
        account_ids = selectors.conversion_action_account_ids(
            platform=self.platform, references=[self.action_reference(item) for item in items]
        )
        if isinstance(request.user, ServicePrincipal):
            require_service_scope(request.user.key, ServiceScope.CONVERSIONS_WRITE, account_ids=account_ids)
            return
        for account_id in account_ids:
            access.require_role(request.user, account_id, access.ADVERTISER)

    def _items(self, body: Any) -> tuple[list[Any], bool]:
        if isinstance(body, dict) and self.batch_key in body:
            items = body[self.batch_key]
            if not isinstance(items, list) or not items:
                raise exceptions.ValidationError({self.batch_key: ["Give a non-empty list."]})
            if len(items) > self.max_batch:
                raise exceptions.ValidationError(
                    {self.batch_key: [f"At most {self.max_batch} per request; got {len(items)}."]}
                )
            return items, True
        if not isinstance(body, dict):
            raise exceptions.ValidationError({"body": ["Send one JSON object, or {" + self.batch_key + ": [...]}."]})
        return [body], False

    def post(self, request, *args, **kwargs):
        raw_items, is_batch = self._items(request.data)
        errors: dict[str, list[str]] = {}
        items: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_items):
            prefix = f"{self.batch_key}[{index}]" if is_batch else ""
            if not isinstance(raw, dict):
                errors[prefix or "body"] = ["Expected a JSON object."]
                continue
            serializer = self.item_serializer(data=raw)
            if serializer.is_valid():
                items.append(serializer.validated_data)
            else:
                errors.update(_flatten(serializer.errors, prefix))
        if errors:
            raise exceptions.ValidationError(errors)
        self.check_account_roles(request, items)
        source = str(request.user.username) if request.user else ""
        try:
            outcome = self.ingest(
                items=items, idempotency_key=request.headers.get("Idempotency-Key", "").strip()[:255], source=source
            )
        except services.IngestValidationError as exc:
            flat: dict[str, list[str]] = {}
            for error in exc.errors:
                name = f"{self.batch_key}[{error.index}].{error.field}" if is_batch else error.field
                flat.setdefault(name, []).append(error.message)
            raise exceptions.ValidationError(flat) from None
        except services.IdempotencyKeyReused:
            raise IdempotencyConflict() from None
        if outcome.created_count:
            services.conversions_request_upload()
        data = ConversionSerializer(outcome.conversions, many=True).data
        for record, duplicate in zip(data, outcome.duplicates, strict=True):
            # By position: one record can answer two items of a batch, once new and once not.
            record["duplicate"] = duplicate
        code = status.HTTP_202_ACCEPTED if outcome.created_count else status.HTTP_200_OK
        if not is_batch:
            return Response(data[0], status=code)
        return Response(
            {
                self.batch_key: data,
                "created": outcome.created_count,
                "duplicates": len(outcome.conversions) - outcome.created_count,
            },
            status=code,
        )


class IdempotencyConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This Idempotency-Key was already used with a different body."
    default_code = "idempotency_key_reused"


def _ingest_responses(*, batch_key: str, item_noun: str) -> dict[int, OpenApiResponse]:
    """The documented answers of an ingest endpoint; only the batch key and what an item is called differ."""
    return {
        202: OpenApiResponse(
            ConversionSerializer,
            description=f"Stored; upload follows. A batch answers {{{batch_key}: [...], created, duplicates}}.",
        ),
        200: OpenApiResponse(ConversionSerializer, description="A repeat: the first record, nothing created."),
        400: OpenApiResponse(description=f"Invalid {item_noun}, named by index and field; nothing stored."),
        409: OpenApiResponse(description="Idempotency-Key reused with a different body."),
    }


class GoogleConversionIngestView(_IngestView):
    """One Google Ads click conversion, or ``{"conversions": [...]}`` of up to 2,000."""

    item_serializer = GoogleConversionInSerializer
    batch_key = "conversions"
    max_batch = services.MAX_BATCH[Platform.GOOGLE]
    platform = Platform.GOOGLE

    def ingest(self, *, items: list[dict[str, Any]], idempotency_key: str, source: str) -> services.IngestOutcome:
        return services.conversions_ingest_google(items=items, idempotency_key=idempotency_key, source=source)

    @extend_schema(
        operation_id="conversions_google_create",
        parameters=[IDEMPOTENCY_HEADER],
        request=GoogleConversionInSerializer,
        responses=_ingest_responses(batch_key="conversions", item_noun="items"),
        tags=["conversions"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class MetaConversionIngestView(_IngestView):
    """One Meta Conversions API event, or ``{"events": [...]}`` of up to 1,000."""

    item_serializer = MetaEventInSerializer
    batch_key = "events"
    max_batch = services.MAX_BATCH[Platform.META]
    platform = Platform.META

    def action_reference(self, item: dict[str, Any]) -> str:
        return str(item.get("conversion_action") or item.get("pixel_id") or "")

    def ingest(self, *, items: list[dict[str, Any]], idempotency_key: str, source: str) -> services.IngestOutcome:
        return services.conversions_ingest_meta(items=items, idempotency_key=idempotency_key, source=source)

    @extend_schema(
        operation_id="conversions_meta_create",
        parameters=[IDEMPOTENCY_HEADER],
        request=MetaEventInSerializer,
        responses=_ingest_responses(batch_key="events", item_noun="events"),
        tags=["conversions"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


# --- Ledger and actions -----------------------------------------------------------------------------------


class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number (NumberFilter alone would take 0.5)."""

    # The stubs type field_class as NumberFilter's DecimalField; django-filter takes any form field class here.
    field_class = forms.IntegerField  # type: ignore[assignment]


class ConversionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Conversion.Status.choices)
    platform = django_filters.ChoiceFilter(choices=Platform.choices)
    account = IdFilter(field_name="account_id")
    conversion_action = IdFilter(field_name="action_id")
    order_id = django_filters.CharFilter()
    event_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Conversion
        fields = ()


@extend_schema(tags=["conversions"])
class ConversionListView(generics.ListAPIView):
    """The upload ledger, newest first: status, attempts, the platform's answer."""

    serializer_class = ConversionSerializer
    filterset_class = ConversionFilter

    def get_queryset(self):
        return access.scope_queryset(selectors.conversion_list(), self.request.user)


class ConversionActionFilter(django_filters.FilterSet):
    platform = django_filters.ChoiceFilter(field_name="account__platform", choices=Platform.choices)
    account = IdFilter(field_name="account_id")
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = ConversionAction
        fields = ()


@extend_schema(tags=["conversions"])
class ConversionActionListView(generics.ListAPIView):
    """Conversion actions (Google) and pixels (Meta) per account: the ids to post conversions with.
    A JWT shows the user's accounts; a service key with conversion_actions:read shows its own."""

    serializer_class = ConversionActionSerializer
    filterset_class = ConversionActionFilter
    authentication_classes = [ServiceKeyAuthentication, JWTWithRolesAuthentication]

    def get_queryset(self):
        actions = selectors.conversion_action_list()
        if isinstance(self.request.user, ServicePrincipal):
            require_service_scope(self.request.user.key, ServiceScope.CONVERSION_ACTIONS_READ)
            return service_key_accounts_only(actions, self.request.user.key)
        return access.scope_queryset(actions, self.request.user)


urlpatterns = [
    path("conversions/google", GoogleConversionIngestView.as_view(), name="conversions-google"),
    path("conversions/meta", MetaConversionIngestView.as_view(), name="conversions-meta"),
    path("conversions/", ConversionListView.as_view(), name="conversion-list"),
    path("conversion-actions/", ConversionActionListView.as_view(), name="conversion-action-list"),
]


@extend_schema_view(post=extend_schema(exclude=True))
class GoogleConversionIngestAliasView(GoogleConversionIngestView):
    """POST /v1/conversions/google, the seed's path: the same endpoint, documented once
    under /api/v1/conversions/google."""
