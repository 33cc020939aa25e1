"""Operator screens: change records (append-only), proposals and the optimizer, alerts, guardrails.

The campaign and ad group screens are the campaigns app's, extended in
``optimization.admin_changes`` with the budget form, pause / enable and the bulk status actions,
so that campaigns knows nothing about optimization.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from campaigns import access
from campaigns.admin_scoping import AccountScopedAdmin
from campaigns.models import Campaign
from optimization import admin_changes, changes, optimizer, selectors, services
from optimization.admin_forms import OptimizerRunForm, UnitsAsMicrosField
from optimization.models import AccountBudgetSettings, Alert, GuardrailChange, OptimizationRun
from platforms.base import format_money

# --- The optimizer, run from admin ----------------------------------------------------------------


def optimizer_preview(*, account) -> tuple[list[optimizer.Proposal], list[tuple[optimizer.CampaignStats, str]]]:
    """What the optimizer would propose for the account now, computed and not saved.

    ``services.optimizer_run(apply=False)`` records proposals and supersedes the account's open
    ones (someone may be reviewing them): a preview must change nothing, so it runs the same
    pure computation on the same snapshot and guardrails, and writes nothing.
    """
    budget_settings = selectors.account_budget_settings(account=account)
    snapshot = services.optimizer_snapshot(account=account, budget_settings=budget_settings)
    guardrails = services.optimizer_guardrails(budget_settings=budget_settings)
    proposals = optimizer.propose(snapshot, guardrails)
    return proposals, optimizer.left_alone(snapshot, guardrails, proposals)


def partial_batches(selected: list[OptimizationRun]) -> list[dict]:
    """Reallocation batches of which only some open proposals are selected, with the net change of
    the account's total daily budget that approving just those would make (a whole batch: zero)."""
    by_batch: dict[str, list[OptimizationRun]] = defaultdict(list)
    for run in selected:
        if run.proposal_kind == optimizer.REALLOCATION and run.proposal_batch:
            by_batch[run.proposal_batch].append(run)
    found = []
    for batch, runs in by_batch.items():
        open_ids = set(
            OptimizationRun.objects.filter(proposal_batch=batch, status=OptimizationRun.Status.PROPOSED).values_list(
                "pk", flat=True
            )
        )
        net = sum(run.change_micros for run in runs)
        if {run.pk for run in runs} != open_ids and net != 0:
            currency = runs[0].campaign.account.currency_code
            found.append(
                {
                    "batch": batch,
                    "account": runs[0].campaign.account,
                    "selected": len(runs),
                    "open": len(open_ids),
                    "open_ids": sorted(open_ids),
                    "net": format_money(net, currency),
                    "net_micros": net,
                    "runs": runs,
                }
            )
    return found


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
        "target",
        "account",
        "kind",
        "source",
        "status",
        "old_value",
        "new_value",
        "change",
        "requested_by_name",
        "created_at",
        "applied_at",
    )
    list_filter = (
        "status",
        "kind",
        "level",
        "source",
        "proposal_kind",
        "campaign__platform",
        ("campaign__account", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("campaign__name", "ad_group__name", "reason", "requested_by_name", "error_message")
    list_select_related = ("campaign__account", "ad_group")
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("id", "status", "kind", "level", "campaign", "ad_group", "source")}),
        ("The change", {"fields": ("budget_period", "old_value", "new_value", "change", "reason")}),
        (
            "Who and when",
            {
                "fields": (
                    "requested_by_name",
                    "confirmed_large_change",
                    "confirmed_shared_budget",
                    "proposal_kind",
                    "proposal_batch",
                    "decided_by_name",
                    "decided_at",
                    "created_at",
                    "updated_at",
                    "applied_at",
                    "finished_at",
                )
            },
        ),
        (
            "The platform's answer",
            {"fields": ("error_message", "push_attempts", "next_attempt_at", "platform_response")},
        ),
    )
    readonly_fields = [str(name) for _title, options in fieldsets for name in options["fields"]]
    actions = ("approve_proposals", "reject_proposals")
    change_list_template = "admin/optimization/optimizationrun/change_list.html"

    def has_change_budget_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    @admin.display(description="On", ordering="campaign__name")
    def target(self, obj: OptimizationRun) -> str:
        if obj.ad_group is not None:
            return f"{obj.campaign.name} › {obj.ad_group.name}"
        return obj.campaign.name

    @admin.display(description="Account", ordering="campaign__account__name")
    def account(self, obj: OptimizationRun) -> str:
        return obj.campaign.account.name

    @admin.display(description="Old", ordering="old_budget_micros")
    def old_value(self, obj: OptimizationRun) -> str:
        return admin_changes.describe_run(obj, obj.campaign.account.currency_code)["old"]

    @admin.display(description="New", ordering="new_budget_micros")
    def new_value(self, obj: OptimizationRun) -> str:
        return admin_changes.describe_run(obj, obj.campaign.account.currency_code)["new"]

    @admin.display(description="Change")
    def change(self, obj: OptimizationRun) -> str:
        if obj.kind == OptimizationRun.Kind.STATUS:
            return f"{obj.old_status or '—'} → {obj.new_status}"
        if not obj.old_budget_micros:
            return "—"
        amount = format_money(obj.change_micros, obj.campaign.account.currency_code)
        sign = "+" if obj.change_micros > 0 else ""
        return f"{sign}{amount} ({Decimal(obj.change_micros) / obj.old_budget_micros * 100:+.1f}%)"

    # --- The list: proposals' impact, the optimizer button --------------------------------------

    def changelist_view(self, request, extra_context=None):
        impact = [
            {
                "account": row.account_name,
                "proposals": row.proposals,
                "current": format_money(row.current_micros, row.currency_code),
                "proposed": format_money(row.proposed_micros, row.currency_code),
                "change": format_money(row.change_micros, row.currency_code),
            }
            for row in selectors.proposal_impact_by_account(account_ids=access.visible_account_ids(request.user))
        ]
        return super().changelist_view(
            request,
            extra_context={
                **(extra_context or {}),
                "proposal_impact": impact,
                "may_run_optimizer": access.has_role_anywhere(request.user, access.ADVERTISER),
            },
        )

    def get_urls(self):
        return [
            path(
                "run-optimizer/",
                self.admin_site.admin_view(self.run_optimizer_view),
                name="optimization_optimizationrun_run_optimizer",
            ),
            *super().get_urls(),
        ]

    def run_optimizer_view(self, request):
        """Preview the optimizer's proposals for one account (computed, nothing saved), then record
        them as proposals to approve; the advertiser role on the account is needed for both."""
        accounts = access.visible_accounts(request.user, role=access.ADVERTISER).order_by("platform", "name")
        if not accounts.exists():
            raise PermissionDenied(access.ROLE_NEEDED[access.ADVERTISER])
        data = request.POST or (request.GET if "account" in request.GET else None)
        form = OptimizerRunForm(data, accounts=accounts)
        preview = None
        if form.is_bound and form.is_valid():
            account = form.cleaned_data["account"]
            access.require_role(request.user, account.pk, access.ADVERTISER)  # the form's choices; asked again
            if request.method == "POST" and "_create" in request.POST:
                runs = services.optimizer_run(account=account, actor=request.user, apply=False)
                if not runs:
                    self.message_user(request, f"The optimizer proposes no change for {account.name}.", messages.INFO)
                    return HttpResponseRedirect(reverse("admin:optimization_optimizationrun_changelist"))
                pushed = [run for run in runs if run.status != OptimizationRun.Status.PROPOSED]
                if pushed:
                    text = f"{len(pushed)} of them are being pushed at once (the account auto-applies)."
                else:
                    text = "Approve them below (all of a reallocation together keeps the total)."
                self.message_user(
                    request,
                    f"Recorded {len(runs)} proposal(s) for {account.name}; older open ones are superseded. {text}",
                    messages.SUCCESS,
                )
                url = reverse("admin:optimization_optimizationrun_changelist")
                return HttpResponseRedirect(f"{url}?proposal_batch={runs[0].proposal_batch}")
            preview = self._preview_context(account)
        context = {
            **self.admin_site.each_context(request),
            "title": "Run the optimizer",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
        }
        return TemplateResponse(request, "admin/optimization/run_optimizer.html", context)

    def _preview_context(self, account) -> dict:
        proposals, left_alone = optimizer_preview(account=account)
        currency = account.currency_code
        names = {
            str(pk): name
            for pk, name in Campaign.objects.filter(pk__in=[p.campaign_id for p in proposals]).values_list("pk", "name")
        }
        budget_settings = selectors.account_budget_settings(account=account)
        current = sum(p.old_budget_micros for p in proposals)
        proposed = sum(p.new_budget_micros for p in proposals)
        return {
            "account": account,
            "rows": [
                {
                    "campaign": names.get(str(p.campaign_id), p.campaign_id),
                    "kind": p.kind,
                    "old": format_money(p.old_budget_micros, currency),
                    "new": format_money(p.new_budget_micros, currency),
                    "change": ("+" if p.change_micros > 0 else "") + format_money(p.change_micros, currency),
                    "reason": p.reason,
                }
                for p in proposals
            ],
            "left_alone": [(campaign.name, why) for campaign, why in left_alone],
            "current": format_money(current, currency),
            "proposed": format_money(proposed, currency),
            "net": format_money(proposed - current, currency),
            "total_unchanged": bool(proposals) and proposed == current,
            "auto_apply": bool(budget_settings and budget_settings.auto_apply),
            "open_proposals": OptimizationRun.objects.filter(
                campaign__account=account, status=OptimizationRun.Status.PROPOSED
            ).count(),
        }

    # --- Actions ---------------------------------------------------------------------------

    @admin.action(description="Approve selected proposals (push them)", permissions=("change_budget",))
    def approve_proposals(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return None
        selected = list(queryset.filter(status=OptimizationRun.Status.PROPOSED).select_related("campaign__account"))
        partial = partial_batches(selected)
        if partial and request.POST.get("post") != "yes":
            # Approving part of a reallocation changes the account's total: say by how much first.
            context = {
                **self.admin_site.each_context(request),
                "title": "Approve part of a reallocation?",
                "opts": self.model._meta,
                "partial": partial,
                "selected": selected,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/optimization/approve_partial_batch.html", context)
        approved, refused = 0, []
        for run in selected:
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
        return None

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
        return format_money(obj.max_campaign_daily_budget_micros, obj.account.currency_code)

    @admin.display(description="Monthly cap")
    def monthly_cap(self, obj: AccountBudgetSettings) -> str:
        return format_money(obj.monthly_budget_micros, obj.account.currency_code)

    @admin.display(description="Target")
    def target(self, obj: AccountBudgetSettings) -> str:
        if obj.target_cpa_micros:
            return f"CPA {format_money(obj.target_cpa_micros, obj.account.currency_code)}"
        if obj.target_roas:
            return f"ROAS {obj.target_roas.normalize()}"
        return "—"


@admin.register(GuardrailChange)
class GuardrailChangeAdmin(AccountScopedAdmin):
    """The guardrails' audit trail: readable by the account's people, never edited or deleted."""

    change_role = None
    add_role = None
    delete_role = None
    list_display = ("changed_at", "account", "field", "old", "new", "changed_by_name")
    list_filter = ("field", ("account", admin.RelatedOnlyFieldListFilter))
    search_fields = ("account__name", "changed_by_name")
    list_select_related = ("account",)
    date_hierarchy = "changed_at"
    fields = ("changed_at", "account", "field", "old", "new", "changed_by_name")
    readonly_fields = fields

    @admin.display(description="Old value")
    def old(self, obj: GuardrailChange) -> str:
        return self._shown(obj, obj.old_value)

    @admin.display(description="New value")
    def new(self, obj: GuardrailChange) -> str:
        return self._shown(obj, obj.new_value)

    @staticmethod
    def _shown(obj: GuardrailChange, value: str) -> str:
        # Amounts are kept as micros in the trail; people read them in the account's currency.
        if obj.field.endswith("_micros") and value.lstrip("-").isdigit():
            return format_money(int(value), obj.account.currency_code)
        return value or "—"


# Alert destinations, notifications not sent, process heartbeats: registered in their own module.
from optimization import admin_alerts  # noqa: E402, F401
