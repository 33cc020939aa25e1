"""Operator screens: the conversion ledger, conversion actions, service API keys."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django import forms
from django.contrib import admin, messages
from django.http import StreamingHttpResponse
from django.utils import timezone

from campaigns import access
from campaigns.admin_scoping import AccountScopedAdmin, EveryAccountAdmin
from conversions import selectors, services
from conversions.models import Conversion, ConversionAction, ServiceApiKey, ServiceScope, default_service_scopes


class _Echo:
    """csv.writer wants a file; streaming wants the line back."""

    def write(self, value: str) -> str:
        return value


@admin.register(Conversion)
class ConversionAdmin(AccountScopedAdmin):
    # The ledger is written by ingestion and the uploader only; an advertiser may retry.
    change_role = None
    add_role = None
    delete_role = None
    # Fits a 1440-px screen: the platform is in the account's name, the action names Meta's event,
    # the next attempt is on the row's page, the creation date in the date drill-down above the list.
    list_display = (
        "id",
        "account",
        "action",
        "status",
        "order_id",
        "value_display",
        "occurred_at",
        "attempts",
        "platform_code",
        "uploaded_at",
    )
    list_filter = (
        "status",
        "platform",
        ("account", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        "occurred_at",
    )
    date_hierarchy = "created_at"
    search_fields = ("=order_id", "=event_id", "=dedupe_key", "=request_id")
    list_select_related = ("account", "action")
    actions = ("retry_failed", "export_csv")
    show_full_result_count = False  # the ledger grows large; counting it on every page is slow

    def has_retry_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    @admin.display(description="Value", ordering="value_micros")
    def value_display(self, obj: Conversion) -> str:
        if obj.value_micros is None:
            return "—"
        return f"{obj.value_micros / 1_000_000:,.2f} {obj.currency_code}".strip()

    @admin.action(description="Retry the selected failed conversions", permissions=("retry",))
    def retry_failed(self, request, queryset) -> None:
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        count = services.conversions_retry(conversion_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - count
        message = f"{count} conversion(s) queued for upload again."
        if skipped:
            message += f" {skipped} skipped: only failed conversions are retried."
        self.message_user(request, message, messages.SUCCESS if count else messages.WARNING)

    @admin.action(description="Export the selected conversions as CSV")
    def export_csv(self, request, queryset) -> StreamingHttpResponse:
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(selectors.CSV_COLUMNS)
            for row in selectors.conversion_csv_rows(queryset=queryset):
                yield writer.writerow(row)

        response = StreamingHttpResponse(lines(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="conversions-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        return response


@admin.register(ConversionAction)
class ConversionActionAdmin(AccountScopedAdmin):
    """Which actions and pixels conversions may be posted to: the account's admin decides."""

    change_role = access.ADMIN
    add_role = access.ADMIN
    list_display = ("name", "external_id", "account", "platform_display", "is_active", "created_at")
    list_filter = ("account__platform", "is_active", ("account", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "external_id", "account__name", "account__external_id")
    list_select_related = ("account",)
    autocomplete_fields = ()

    @admin.display(description="Platform", ordering="account__platform")
    def platform_display(self, obj: ConversionAction) -> str:
        return obj.account.get_platform_display()


class ServiceApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ServiceScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=default_service_scopes,
        help_text="What the key may do.",
    )

    class Meta:
        model = ServiceApiKey
        fields = ("name", "scopes", "accounts", "is_active")


@admin.register(ServiceApiKey)
class ServiceApiKeyAdmin(EveryAccountAdmin):
    """A key may post conversions to every account: only an admin of every account handles keys."""

    view_role = access.ADMIN
    form = ServiceApiKeyForm
    filter_horizontal = ("accounts",)
    list_display = ("name", "prefix", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes", "accounts")
        return ("name", "scopes", "accounts", "prefix", "is_active", "created_at", "last_used_at")

    def save_model(self, request, obj: ServiceApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw_key = services.service_api_key_create(name=obj.name, scopes=obj.scopes)
        obj.pk = key.pk
        obj.prefix, obj.key_hash, obj.created_at = key.prefix, key.key_hash, key.created_at
        # Shown this once: only its hash is stored.
        self.message_user(
            request,
            f"Key for {key.name}: {raw_key} — copy it now; it cannot be shown again.",
            messages.WARNING,
        )
