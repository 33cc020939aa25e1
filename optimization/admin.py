from django.contrib import admin

from optimization.models import OptimizationRun


@admin.register(OptimizationRun)
class OptimizationRunAdmin(admin.ModelAdmin):
    """The audit trail: readable by staff, never edited or deleted."""

    list_display = (
        "id",
        "campaign",
        "source",
        "status",
        "old_budget_micros",
        "new_budget_micros",
        "requested_by",
        "created_at",
        "applied_at",
    )
    list_filter = ("status", "source", "campaign__platform")
    search_fields = ("campaign__name", "reason", "requested_by__username")
    list_select_related = ("campaign", "requested_by")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in OptimizationRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
