from django.contrib import admin

from campaigns.models import AdAccount, Campaign, DailyMetric, SyncRun


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
        "last_synced_at",
    )
    list_filter = ("platform", "is_active", "needs_attention", "currency_code")
    search_fields = ("name", "external_id", "manager_customer_id")
    readonly_fields = ("last_synced_at", "created_at", "updated_at")


class DailyMetricInline(admin.TabularInline):
    model = DailyMetric
    extra = 0
    can_delete = False
    ordering = ("-date",)
    fields = ("date", "impressions", "clicks", "cost_micros", "conversions", "conversion_value_micros")
    readonly_fields = fields
    max_num = 0

    def get_queryset(self, request):
        # The change page shows the recent days, not the whole history.
        return super().get_queryset(request).order_by("-date")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "platform", "account", "status", "daily_budget_micros", "budget_is_shared", "synced_at")
    list_filter = ("platform", "status", "budget_is_shared", "account")
    search_fields = ("name", "external_id", "account__name")
    list_select_related = ("account",)
    readonly_fields = ("id", "platform", "external_id", "synced_at", "created_at", "updated_at")
    autocomplete_fields = ("account",)


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
