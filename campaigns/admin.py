"""Operator screens for accounts, campaigns, metrics and sync runs; actions call services."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import BigIntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from campaigns import services
from campaigns.models import AdAccount, Campaign, DailyMetric, SyncRun
from platforms.base import PlatformError


def money(micros: int | None, currency: str = "") -> str:
    if micros is None:
        return "—"
    return f"{micros / 1_000_000:,.2f} {currency}".strip()


@admin.register(AdAccount)
class AdAccountAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "platform",
        "external_id",
        "currency_code",
        "time_zone",
        "is_active",
        "needs_attention",
        "sync_interval_minutes",
        "sync_lag",
        "last_run",
    )
    list_filter = ("platform", "is_active", "needs_attention", "currency_code")
    search_fields = ("name", "external_id", "manager_customer_id")
    readonly_fields = ("last_synced_at", "attention_reason", "created_at", "updated_at")
    actions = ("sync_now", "clear_attention")
    change_list_template = "admin/campaigns/adaccount/change_list.html"

    def get_queryset(self, request):
        latest = SyncRun.objects.filter(account=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_run_status=Subquery(latest.values("status")[:1]),
                last_run_id=Subquery(latest.values("id")[:1]),
            )
        )

    @admin.display(description="Sync lag", ordering="last_synced_at")
    def sync_lag(self, obj: AdAccount) -> str:
        return f"{timesince(obj.last_synced_at)} ago" if obj.last_synced_at else "never synced"

    @admin.display(description="Last run")
    def last_run(self, obj: AdAccount) -> str:
        if not obj.last_run_id:
            return "—"
        url = reverse("admin:campaigns_syncrun_change", args=[obj.last_run_id])
        return format_html('<a href="{}">#{} {}</a>', url, obj.last_run_id, obj.last_run_status)

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        runs = [services.sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL) for account in queryset]
        self.message_user(request, f"Queued {len(runs)} sync run(s); progress shows under Sync runs.", messages.SUCCESS)

    @admin.action(description="Clear 'needs attention' (credentials fixed)")
    def clear_attention(self, request, queryset):
        for account in queryset:
            services.account_clear_attention(account=account)
        self.message_user(request, f"Cleared {queryset.count()} account(s); scheduled syncs resume.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("discover/", self.admin_site.admin_view(self.discover_view), name="campaigns_adaccount_discover"),
            *super().get_urls(),
        ]

    def discover_view(self, request):
        if request.method != "POST" or not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:campaigns_adaccount_changelist"))
        try:
            accounts = services.account_discover()
        except PlatformError as exc:
            self.message_user(request, f"Could not list accounts: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"Discovered {len(accounts)} account(s); they are up to date.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:campaigns_adaccount_changelist"))


class DailyMetricInline(admin.TabularInline):
    model = DailyMetric
    extra = 0
    can_delete = False
    fields = ("date", "impressions", "clicks", "cost_micros", "conversions", "conversion_value_micros")
    readonly_fields = fields
    max_num = 0
    verbose_name_plural = "Recent daily metrics"

    def get_queryset(self, request):
        since = timezone.localdate() - timedelta(days=14)
        return super().get_queryset(request).filter(date__gte=since).order_by("-date")


def _spend_since(days: int):
    since = timezone.localdate() - timedelta(days=days - 1)
    return Coalesce(
        Sum("daily_metrics__cost_micros", filter=Q(daily_metrics__date__gte=since)),
        Value(0),
        output_field=BigIntegerField(),
    )


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "platform",
        "account",
        "status",
        "daily_budget",
        "budget_is_shared",
        "spend_7d",
        "spend_30d",
        "synced_at",
    )
    list_filter = ("platform", "status", "budget_is_shared", "account")
    search_fields = ("name", "external_id", "account__name")
    list_select_related = ("account",)
    readonly_fields = (
        "id",
        "account",
        "platform",
        "external_id",
        "budget_external_id",
        "budget_is_shared",
        "synced_at",
        "created_at",
        "updated_at",
    )
    inlines = (DailyMetricInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(spend_7=_spend_since(7), spend_30=_spend_since(30))

    @admin.display(description="Daily budget", ordering="daily_budget_micros")
    def daily_budget(self, obj: Campaign) -> str:
        return money(obj.daily_budget_micros, obj.account.currency_code)

    @admin.display(description="Spend 7d", ordering="spend_7")
    def spend_7d(self, obj: Campaign) -> str:
        return money(obj.spend_7, obj.account.currency_code)

    @admin.display(description="Spend 30d", ordering="spend_30")
    def spend_30d(self, obj: Campaign) -> str:
        return money(obj.spend_30, obj.account.currency_code)


@admin.register(DailyMetric)
class DailyMetricAdmin(admin.ModelAdmin):
    list_display = (
        "campaign",
        "date",
        "impressions",
        "clicks",
        "cost_micros",
        "conversions",
        "conversion_value_micros",
    )
    list_filter = ("campaign__platform", "date")
    search_fields = ("campaign__name", "campaign__external_id")
    list_select_related = ("campaign",)
    date_hierarchy = "date"
    raw_id_fields = ("campaign",)
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "account",
        "trigger",
        "status",
        "campaigns_synced",
        "metric_rows_synced",
        "duration_seconds",
        "progress",
        "error_class",
        "created_at",
    )
    list_filter = ("status", "trigger", "account__platform", "account")
    search_fields = ("account__name", "error_message")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in SyncRun._meta.fields] + ["duration_seconds"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
