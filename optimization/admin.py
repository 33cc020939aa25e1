"""Operator screens: budget changes (append-only), the budget form on campaigns, proposals, alerts.

The campaign screen is the campaigns app's, extended here so the budget form can call this
app's services without campaigns knowing about optimization.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns import access
from campaigns.admin import CampaignAdmin
from campaigns.admin_scoping import AccountScopedAdmin
from campaigns.models import Campaign
from campaigns.services import account_today
from optimization import changes, selectors, services
from optimization.models import AccountBudgetSettings, Alert, GuardrailChange, OptimizationRun

MICROS_PER_UNIT = 1_000_000


class UnitsAsMicrosField(forms.DecimalField):
    """Shows and takes an amount in currency units; cleans to integer micros for the model."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return (Decimal(value) / MICROS_PER_UNIT).normalize()
        return value

    def clean(self, value):
        amount = super().clean(value)
        if amount is None:
            return None
        return int(amount * MICROS_PER_UNIT)


class BudgetChangeForm(forms.Form):
    daily_budget = UnitsAsMicrosField(label="New daily budget", help_text="In the account currency, e.g. 125.50.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required; kept in the audit trail.")
    confirm_large_change = forms.BooleanField(
        required=False, label="Confirm a change beyond ±50% of the current budget"
    )
    confirm_shared_budget = forms.BooleanField(
        required=False, label="Confirm changing a budget shared with other campaigns"
    )

    # Service error fields → the form field that shows them.
    FIELD_OF_ERROR = {
        "daily_budget_micros": "daily_budget",
        "reason": "reason",
        "confirm_large_change": "confirm_large_change",
        "confirm_shared_budget": "confirm_shared_budget",
    }

    def add_service_error(self, error: ValidationError) -> None:
        for name, errors in error.message_dict.items():
            self.add_error(self.FIELD_OF_ERROR.get(name), errors)


def _money(micros: int | None, currency: str) -> str:
    return changes.format_money(micros, currency)


# --- Campaigns: the budget form ----------------------------------------------------------------


class BudgetHistoryInline(admin.TabularInline):
    model = OptimizationRun
    fk_name = "campaign"
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "Budget history"
    fields = ("created_at", "source", "status", "old_budget_micros", "new_budget_micros", "reason", "requested_by_name")
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CampaignWithBudgetAdmin(CampaignAdmin):
    """The campaign screen plus the one safe way to change a budget: the budget form."""

    readonly_fields = (*CampaignAdmin.readonly_fields, "daily_budget_micros", "budget_micros", "budget_tools")
    inlines = (*CampaignAdmin.inlines, BudgetHistoryInline)
    actions = ("change_daily_budget",)

    def has_change_budget_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/budget/",
                self.admin_site.admin_view(self.budget_view),
                name="campaigns_campaign_budget",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Budget")
    def budget_tools(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:campaigns_campaign_budget", args=[obj.pk])
        return format_html('<a class="button" href="{}">Change daily budget</a>', url)

    @admin.action(description="Change daily budget (one campaign)", permissions=("change_budget",))
    def change_daily_budget(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one campaign to change its budget.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_budget", args=[queryset.get().pk]))

    def budget_view(self, request, object_id):
        campaign = get_object_or_404(self.get_queryset(request).select_related("account"), pk=object_id)
        if not access.has_role(request.user, campaign.account_id, access.ADVERTISER):
            raise PermissionDenied
        currency = campaign.account.currency_code
        form = BudgetChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = changes.budget_change(
                    campaign=campaign,
                    new_micros=form.cleaned_data["daily_budget"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                    source=OptimizationRun.Source.STAFF,
                    confirm_large_change=form.cleaned_data["confirm_large_change"],
                    confirm_shared_budget=form.cleaned_data["confirm_shared_budget"],
                )
            except ValidationError as exc:
                form.add_service_error(exc)
            except changes.BudgetPlatformUnavailable as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Budget change #{run.pk} to {_money(run.new_budget_micros, currency)} is being pushed; "
                    f"it shows as applied once the platform confirms.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        today = account_today(campaign.account)
        spend = selectors.campaign_spend_summary(campaign=campaign, today=today)
        budget_settings = selectors.account_budget_settings(account=campaign.account)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change the daily budget of {campaign.name}",
            "opts": self.model._meta,
            "campaign": campaign,
            "form": form,
            "today": today,
            "current_budget": _money(campaign.daily_budget_micros, currency),
            "spend_today": _money(spend["today"], currency),
            "spend_month": _money(spend["month"], currency),
            "spend_7_days": _money(spend["last_7_days"], currency),
            "month_allowance": _money((campaign.daily_budget_micros or 0) * today.day, currency),
            "account_cap": _money(budget_settings.max_campaign_daily_budget_micros, currency)
            if budget_settings
            else "—",
            "monthly_cap": _money(budget_settings.monthly_budget_micros, currency) if budget_settings else "—",
            "shared_with": selectors.shared_budget_siblings(campaign=campaign) if campaign.budget_is_shared else [],
            "history": [
                (run, _money(run.old_budget_micros, currency), _money(run.new_budget_micros, currency))
                for run in selectors.campaign_budget_history(campaign=campaign)
            ],
        }
        return TemplateResponse(request, "admin/optimization/campaign_budget.html", context)


admin.site.unregister(Campaign)
admin.site.register(Campaign, CampaignWithBudgetAdmin)


# --- Budget changes and proposals ----------------------------------------------------------------


@admin.register(OptimizationRun)
class OptimizationRunAdmin(AccountScopedAdmin):
    """The audit trail: readable by staff, never edited or deleted; proposals are approved or rejected."""

    account_field = "campaign__account"
    change_role = None
    add_role = None
    delete_role = None

    list_display = (
        "id",
        "campaign",
        "account",
        "source",
        "status",
        "old_budget",
        "new_budget",
        "change",
        "requested_by_name",
        "created_at",
        "applied_at",
    )
    list_filter = (
        "status",
        "source",
        "proposal_kind",
        "campaign__platform",
        ("campaign__account", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("campaign__name", "reason", "requested_by_name", "error_message")
    list_select_related = ("campaign__account",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in OptimizationRun._meta.fields]
    actions = ("approve_proposals", "reject_proposals")
    change_list_template = "admin/optimization/optimizationrun/change_list.html"

    def has_change_budget_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    @admin.display(description="Account", ordering="campaign__account__name")
    def account(self, obj: OptimizationRun) -> str:
        return obj.campaign.account.name

    @admin.display(description="Old budget", ordering="old_budget_micros")
    def old_budget(self, obj: OptimizationRun) -> str:
        return _money(obj.old_budget_micros, obj.campaign.account.currency_code)

    @admin.display(description="New budget", ordering="new_budget_micros")
    def new_budget(self, obj: OptimizationRun) -> str:
        return _money(obj.new_budget_micros, obj.campaign.account.currency_code)

    @admin.display(description="Change")
    def change(self, obj: OptimizationRun) -> str:
        if not obj.old_budget_micros:
            return "—"
        return f"{Decimal(obj.change_micros) / obj.old_budget_micros * 100:+.1f}%"

    def changelist_view(self, request, extra_context=None):
        impact = [
            {
                "account": row.account_name,
                "proposals": row.proposals,
                "current": _money(row.current_micros, row.currency_code),
                "proposed": _money(row.proposed_micros, row.currency_code),
                "change": _money(row.change_micros, row.currency_code),
            }
            for row in selectors.proposal_impact_by_account(account_ids=access.visible_account_ids(request.user))
        ]
        return super().changelist_view(request, extra_context={**(extra_context or {}), "proposal_impact": impact})

    @admin.action(description="Approve selected proposals (push them)", permissions=("change_budget",))
    def approve_proposals(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        approved, refused = 0, []
        for run in queryset.filter(status=OptimizationRun.Status.PROPOSED):
            try:
                services.proposal_approve(run=run, actor=request.user)
                approved += 1
            except ValidationError as exc:
                refused.append(f"#{run.pk}: {' '.join(exc.messages)}")
            except changes.BudgetPlatformUnavailable as exc:
                refused.append(f"#{run.pk}: {exc}")
        if approved:
            self.message_user(request, f"Approved {approved} proposal(s); they are being pushed.", messages.SUCCESS)
        for problem in refused:
            self.message_user(request, problem, messages.ERROR)
        if not approved and not refused:
            self.message_user(request, "None of the selected runs is a proposal.", messages.WARNING)

    @admin.action(description="Reject selected proposals", permissions=("change_budget",))
    def reject_proposals(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        rejected = 0
        for run in queryset.filter(status=OptimizationRun.Status.PROPOSED):
            services.proposal_reject(run=run, actor=request.user, note=f"Rejected by {request.user.get_username()}.")
            rejected += 1
        self.message_user(request, f"Rejected {rejected} proposal(s).", messages.SUCCESS)


# --- Alerts and account settings -----------------------------------------------------------------


@admin.register(Alert)
class AlertAdmin(AccountScopedAdmin):
    """Opened and resolved by the evaluation only; platform-wide alerts (no account) are shown to
    people with a role on every account."""

    change_role = None
    add_role = None
    delete_role = None
    list_display = ("kind", "subject_label", "severity", "value", "threshold", "opened_at", "resolved_at")
    list_filter = ("kind", "severity", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("subject", "subject_label", "message")
    date_hierarchy = "opened_at"
    readonly_fields = [f.name for f in Alert._meta.fields]


@admin.register(AccountBudgetSettings)
class AccountBudgetSettingsAdmin(AccountScopedAdmin):
    """Guardrails decide what the optimizer may push unasked: the account's admin sets them."""

    change_role = access.ADMIN
    add_role = access.ADMIN
    delete_role = access.ADMIN
    list_display = ("account", "max_cap", "monthly_cap", "target", "optimizer_enabled", "auto_apply")
    list_filter = ("optimizer_enabled", "auto_apply")
    search_fields = ("account__name", "account__external_id")
    list_select_related = ("account",)

    def save_model(self, request, obj: AccountBudgetSettings, form, change: bool) -> None:
        services.budget_settings_save(budget_settings=obj, actor=request.user)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # Amounts are typed in currency units; the table keeps micros.
        if isinstance(db_field, models.BigIntegerField) and db_field.name.endswith("_micros"):
            return UnitsAsMicrosField(
                required=not db_field.blank,
                label=db_field.verbose_name.replace(" micros", "").capitalize() + " (currency units)",
                help_text=db_field.help_text,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="Campaign cap/day")
    def max_cap(self, obj: AccountBudgetSettings) -> str:
        return _money(obj.max_campaign_daily_budget_micros, obj.account.currency_code)

    @admin.display(description="Monthly cap")
    def monthly_cap(self, obj: AccountBudgetSettings) -> str:
        return _money(obj.monthly_budget_micros, obj.account.currency_code)

    @admin.display(description="Target")
    def target(self, obj: AccountBudgetSettings) -> str:
        if obj.target_cpa_micros:
            return f"CPA {_money(obj.target_cpa_micros, obj.account.currency_code)}"
        if obj.target_roas:
            return f"ROAS {obj.target_roas.normalize()}"
        return "—"


@admin.register(GuardrailChange)
class GuardrailChangeAdmin(AccountScopedAdmin):
    """The guardrails' audit trail: readable by the account's people, never edited or deleted."""

    change_role = None
    add_role = None
    delete_role = None
    list_display = ("changed_at", "account", "field", "old_value", "new_value", "changed_by_name")
    list_filter = ("field", ("account", admin.RelatedOnlyFieldListFilter))
    search_fields = ("account__name", "changed_by_name")
    list_select_related = ("account",)
    date_hierarchy = "changed_at"
    readonly_fields = [f.name for f in GuardrailChange._meta.fields]


# Alert destinations, notifications not sent, process heartbeats: registered in their own module.
from optimization import admin_alerts  # noqa: E402, F401
