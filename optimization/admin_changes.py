"""Budget and status changes from the campaign and ad group / ad set pages of admin.

The campaigns app shows what the platforms own, read-only; this module adds the only ways to
change it, all through ``optimization.changes`` (the one guarded, audited path):

* a budget form (daily or lifetime, whichever the object has, on the object that holds it) with
  a "Check with Google / Meta" button that runs the platform's own validation and saves nothing;
* a pause / enable form, with the same check;
* "Pause selected" / "Enable selected" on the lists, through a confirmation page that asks for
  a reason and makes one change record per object, reporting each refusal by name.

Every view and action asks for the advertiser role on the object's account (campaigns.access).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import BigIntegerField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from campaigns import access
from campaigns.admin import AdGroupAdmin, CampaignAdmin, ReadOnlyInline, budget_text
from campaigns.models import AdGroup, BudgetLevel, Campaign, CampaignStatus
from campaigns.services import account_today
from optimization import changes, selectors
from optimization.admin_forms import BudgetChangeForm, BulkStatusForm, StatusChangeForm
from optimization.conf import setting
from optimization.models import AccountBudgetSettings, OptimizationRun
from platforms.base import format_money

if TYPE_CHECKING:
    # The mixin only ever sits on an account-scoped ModelAdmin: type-check it as one.
    from campaigns.admin_scoping import AccountScopedAdmin as _ChangeToolsBase
else:
    _ChangeToolsBase = object

# Button labels name the platform that answers ("Check with Google", "Check with Meta").
CHECK_WITH = {"google": "Google", "meta": "Meta"}
# A bulk action asks the platform about each object before recording its change: beyond this
# many the request would outlast a browser's patience; select fewer, or filter the list first.
BULK_LIMIT = 100


def money(micros: int | None, obj: Campaign | AdGroup) -> str:
    """In the currency of the object's account."""
    return format_money(micros, obj.account.currency_code)


def noun(obj: Campaign | AdGroup) -> str:
    if isinstance(obj, Campaign):
        return "campaign"
    return "ad set" if obj.platform == "meta" else "ad group"


def target_of(obj: Campaign | AdGroup) -> dict[str, Any]:
    """The keyword the change services take for this object."""
    return {"ad_group": obj} if isinstance(obj, AdGroup) else {"campaign": obj}


def admin_url(obj: Campaign | AdGroup, view: str) -> str:
    return reverse(f"admin:campaigns_{obj._meta.model_name}_{view}", args=[obj.pk])


# --- Where a budget lives -------------------------------------------------------------------------


@dataclass
class BudgetPlace:
    """The budget an object's form changes, or why it has none here and where to go instead."""

    period: str | None  # daily | lifetime; None: no budget form on this object
    current_micros: int | None = None
    note: str = ""
    elsewhere: list[tuple[str, str]] = field(default_factory=list)  # (label, budget form url)


def budget_place(obj: Campaign | AdGroup) -> BudgetPlace:
    platform = changes.PLATFORM_NAMES.get(obj.account.platform, obj.account.platform)
    if obj.status == CampaignStatus.REMOVED:
        return BudgetPlace(None, note=f"This {noun(obj)} is removed on {platform}; nothing of it can change.")
    if isinstance(obj, Campaign):
        if obj.budget_level == BudgetLevel.AD_GROUP:
            ad_sets = obj.ad_groups.exclude(status=CampaignStatus.REMOVED).order_by("name")
            return BudgetPlace(
                None,
                note=f"The budgets of this campaign live on its ad sets on {platform} (ad set budgets): "
                f"change the budget of one of them.",
                elsewhere=[
                    (f"{ad_set.name}: {budget_text(ad_set)}", admin_url(ad_set, "budget")) for ad_set in ad_sets
                ],
            )
        daily, lifetime = obj.daily_budget_micros, obj.budget_micros
    else:
        campaign = obj.campaign
        if obj.platform == "google":
            return BudgetPlace(
                None,
                note="Google ad groups have no budget: the campaign's budget is what they spend.",
                elsewhere=[(f"{campaign.name}: {budget_text(campaign)}", admin_url(campaign, "budget"))],
            )
        if campaign.budget_level != BudgetLevel.AD_GROUP:
            return BudgetPlace(
                None,
                note=f"Campaign “{campaign.name}” holds the budget on {platform} (campaign budget), so its ad sets "
                f"have none.",
                elsewhere=[(f"{campaign.name}: {budget_text(campaign)}", admin_url(campaign, "budget"))],
            )
        daily, lifetime = obj.daily_budget_micros, obj.lifetime_budget_micros
    if daily is not None:
        return BudgetPlace(OptimizationRun.BudgetPeriod.DAILY, daily)
    if lifetime is not None:
        return BudgetPlace(OptimizationRun.BudgetPeriod.LIFETIME, lifetime)
    return BudgetPlace(None, note=f"This {noun(obj)} has no budget on {platform} to change.")


def _spend(obj: Campaign | AdGroup, today) -> dict[str, int]:
    """Today's, the last 7 days' and the month's spend (the account's dates), in one query."""

    def between(first, last):
        return Coalesce(
            Sum("daily_metrics__cost_micros", filter=Q(daily_metrics__date__gte=first, daily_metrics__date__lte=last)),
            Value(0),
            output_field=BigIntegerField(),
        )

    return (
        type(obj)
        .objects.filter(pk=obj.pk)
        .aggregate(
            today=between(today, today),
            last_7_days=between(today - timedelta(days=6), today),
            month=between(today.replace(day=1), today),
        )
    )


def change_history(obj: Campaign | AdGroup, limit: int = 20) -> list[dict[str, Any]]:
    runs = OptimizationRun.objects.select_related("ad_group").order_by("-created_at", "-id")
    runs = runs.filter(ad_group=obj) if isinstance(obj, AdGroup) else runs.filter(campaign=obj)
    return [{"run": run, **describe_run(run, obj.account.currency_code)} for run in runs[:limit]]


def describe_run(run: OptimizationRun, currency: str) -> dict[str, str]:
    """What a change record changes, old → new, in words and money."""
    if run.kind == OptimizationRun.Kind.STATUS:
        return {"what": "status", "old": run.old_status or "—", "new": run.new_status}
    what = f"{run.get_budget_period_display().lower() or 'daily'} budget"
    return {
        "what": what,
        "old": format_money(run.old_budget_micros, currency),
        "new": format_money(run.new_budget_micros, currency),
    }


def preview_errors_have(preview: changes.ChangePreview | None, code: str) -> bool:
    return preview is not None and any(error["code"] == code for error in preview.errors)


# --- The tools on a synced object's admin ---------------------------------------------------------


class ChangeToolsMixin(_ChangeToolsBase):
    """Budget form, pause / enable form and the bulk status actions of a synced object's admin."""

    change_form_template = "admin/optimization/synced_change_form.html"
    actions: Sequence[str] = ("pause_selected", "enable_selected")

    # --- Who may ---------------------------------------------------------------------------

    def has_change_status_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    def has_change_budget_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    def _may_change(self, request, obj) -> bool:
        return obj is not None and access.has_role(request.user, obj.account_id, access.ADVERTISER)

    def _changeable(self, request, object_id):
        """The object if the user may see it (else 404) and change it (else 403)."""
        obj = self.get_object(request, object_id)  # None for an unknown, invisible or malformed id
        if obj is None:
            raise Http404("No such object in the accounts you can see.")
        if not self._may_change(request, obj):
            raise PermissionDenied(access.ROLE_NEEDED[access.ADVERTISER])
        return obj

    # --- Pages -----------------------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        return [
            path("<path:object_id>/budget/", self.admin_site.admin_view(self.budget_view), name=f"{prefix}_budget"),
            path("<path:object_id>/status/", self.admin_site.admin_view(self.status_view), name=f"{prefix}_status"),
            *super().get_urls(),
        ]

    def get_fieldsets(self, request, obj=None):
        """The budget's tools beside the budget, for those who may use them."""
        fieldsets = super().get_fieldsets(request, obj)
        if not self._may_change(request, obj):
            return fieldsets
        return [
            (title, {**options, "fields": (*options["fields"], "budget_tools")} if title == "Budget" else options)
            for title, options in fieldsets
        ]

    @admin.display(description="Change")
    def budget_tools(self, obj) -> str:
        place = budget_place(obj)
        if place.period:
            return format_html(
                '<a class="button" href="{}">Change {} budget</a>', admin_url(obj, "budget"), place.period
            )
        links = format_html_join(
            " ", '<a class="button" href="{}">{}</a>', ((url, label) for label, url in place.elsewhere)
        )
        return format_html("{} {}", place.note, links)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        tools = []
        if self._may_change(request, obj) and obj.status != CampaignStatus.REMOVED:
            verb = "Pause" if obj.status == CampaignStatus.ENABLED else "Enable"
            target = "paused" if verb == "Pause" else "enabled"
            tools.append({"label": f"{verb} {noun(obj)}", "url": f"{admin_url(obj, 'status')}?to={target}"})
        return super().change_view(
            request, object_id, form_url, extra_context={**(extra_context or {}), "change_tools": tools}
        )

    def _page_context(self, request, obj, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "original": obj,
            "noun": noun(obj),
            "check_label": f"Check with {CHECK_WITH.get(obj.platform, obj.platform)}",
            "platform_name": changes.PLATFORM_NAMES.get(obj.platform, obj.platform),
            "change_url": admin_url(obj, "change"),
            "history": change_history(obj),
        }

    def budget_view(self, request, object_id):
        obj = self._changeable(request, object_id)
        place = budget_place(obj)
        currency = obj.account.currency_code
        shared = isinstance(obj, Campaign) and obj.budget_is_shared
        form = BudgetChangeForm(request.POST or None, period=place.period or "daily", currency=currency)
        preview = None
        if request.method == "POST" and place.period and form.is_valid():
            request_kwargs = {
                **target_of(obj),
                "new_micros": form.budget_micros,
                "reason": form.cleaned_data["reason"],
                "period": place.period,
                "confirm_large_change": form.cleaned_data["confirm_large_change"],
                "confirm_shared_budget": form.cleaned_data["confirm_shared_budget"],
            }
            preview, pushed = self._preview_or_push(
                request,
                obj,
                form,
                request_kwargs,
                preview_change=changes.budget_change_preview,
                push_change=changes.budget_change,
                pushed_text=lambda run: f"Budget change #{run.pk} to {money(run.new_budget_micros, obj)}",
            )
            if pushed is not None:
                return pushed
        today = account_today(obj.account)
        spend = _spend(obj, today)
        budget_settings: AccountBudgetSettings | None = selectors.account_budget_settings(account=obj.account)
        context = {
            **self._page_context(
                request,
                obj,
                f"Change the {place.period} budget of {obj.name}" if place.period else f"The budget of {obj.name}",
            ),
            "place": place,
            "form": form,
            "preview": preview,
            "needs_large_confirmation": self._needs_large_confirmation(form, place, preview),
            "needs_shared_confirmation": shared,
            "current_budget": money(place.current_micros, obj),
            "today": today,
            "spend_today": money(spend["today"], obj),
            "spend_7_days": money(spend["last_7_days"], obj),
            "spend_month": money(spend["month"], obj),
            "lifetime_spent": self._lifetime_spent(obj, place),
            "end_time": obj.end_time,
            "account_cap": money(budget_settings.max_campaign_daily_budget_micros, obj) if budget_settings else "—",
            "shared_with": selectors.shared_budget_siblings(campaign=obj) if shared else [],
        }
        return TemplateResponse(request, "admin/optimization/budget_form.html", context)

    def _preview_or_push(
        self,
        request,
        obj: Campaign | AdGroup,
        form,
        request_kwargs: dict[str, Any],
        *,
        preview_change: Callable[..., changes.ChangePreview],
        push_change: Callable[..., OptimizationRun],
        pushed_text: Callable[[OptimizationRun], str],
    ) -> tuple[changes.ChangePreview | None, HttpResponseRedirect | None]:
        """The "Check" button previews the change; the submit button pushes it and redirects to the object.

        Returns the preview (when checked) and the redirect (when pushed); refusals land on ``form``."""
        try:
            if "_check" in request.POST:
                return preview_change(**request_kwargs), None
            run = push_change(**request_kwargs, actor=request.user, source=OptimizationRun.Source.STAFF)
        except ValidationError as exc:
            form.add_service_error(exc)
        except changes.BudgetPlatformUnavailable as exc:
            form.add_error(None, str(exc))
        else:
            self.message_user(
                request,
                f"{pushed_text(run)} is being pushed; it shows as "
                f"applied once {changes.PLATFORM_NAMES.get(obj.platform, obj.platform)} confirms.",
                messages.SUCCESS,
            )
            return None, HttpResponseRedirect(admin_url(obj, "change"))
        return None, None

    def _needs_large_confirmation(self, form, place: BudgetPlace, preview) -> bool:
        """The ±50% box appears once the typed budget is that far from the current one (or a guard asked)."""
        if form.errors.get("confirm_large_change") or preview_errors_have(preview, "large_change_unconfirmed"):
            return True
        if not form.is_bound or not hasattr(form, "cleaned_data"):
            return False
        new, old = form.budget_micros, place.current_micros
        if form.cleaned_data.get("confirm_large_change"):
            return True
        ratio = Decimal(setting("BUDGET_LARGE_CHANGE_RATIO"))
        return bool(new and old and abs(new - old) > old * ratio)

    def _lifetime_spent(self, obj, place: BudgetPlace) -> str:
        if place.period != OptimizationRun.BudgetPeriod.LIFETIME or obj.budget_remaining_micros is None:
            return ""
        return money(max(place.current_micros - obj.budget_remaining_micros, 0), obj)

    def status_view(self, request, object_id):
        obj = self._changeable(request, object_id)
        wanted = request.POST.get("status") or request.GET.get("to") or ""
        if wanted not in changes.SETTABLE_STATUSES:
            wanted = CampaignStatus.PAUSED if obj.status == CampaignStatus.ENABLED else CampaignStatus.ENABLED
        form = StatusChangeForm(request.POST or None, initial={"status": wanted})
        preview = None
        if request.method == "POST" and form.is_valid():
            request_kwargs = {
                **target_of(obj),
                "new_status": form.cleaned_data["status"],
                "reason": form.cleaned_data["reason"],
            }
            preview, pushed = self._preview_or_push(
                request,
                obj,
                form,
                request_kwargs,
                preview_change=changes.status_change_preview,
                push_change=changes.status_change,
                pushed_text=lambda run: f"Status change #{run.pk} ({run.old_status} → {run.new_status})",
            )
            if pushed is not None:
                return pushed
        verb = "Pause" if wanted == CampaignStatus.PAUSED else "Enable"
        context = {
            **self._page_context(request, obj, f"{verb} {noun(obj)} {obj.name}"),
            "form": form,
            "preview": preview,
            "verb": verb,
            "wanted": wanted,
        }
        return TemplateResponse(request, "admin/optimization/status_form.html", context)

    # --- Bulk actions ------------------------------------------------------------------------

    @admin.action(description="Pause selected", permissions=("change_status",))
    def pause_selected(self, request, queryset):
        return self._bulk_status(request, queryset, CampaignStatus.PAUSED, "pause_selected")

    @admin.action(description="Enable selected", permissions=("change_status",))
    def enable_selected(self, request, queryset):
        return self._bulk_status(request, queryset, CampaignStatus.ENABLED, "enable_selected")

    def _bulk_status(self, request, queryset, new_status: str, action: str):
        """Django's action confirmation pattern: list the objects and ask for a reason; the
        confirmation posts back (``post=yes``) and each object gets its own change record."""
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return None
        objects = list(queryset.select_related("account").order_by("name"))
        if len(objects) > BULK_LIMIT:
            self.message_user(
                request,
                f"Nothing was changed: select at most {BULK_LIMIT} at a time ({len(objects)} selected); "
                f"filter the list first.",
                messages.ERROR,
            )
            return None
        form = BulkStatusForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            recorded, refused = [], []
            for obj in objects:
                try:
                    recorded.append(
                        changes.status_change(
                            **target_of(obj),
                            new_status=new_status,
                            reason=form.cleaned_data["reason"],
                            actor=request.user,
                            source=OptimizationRun.Source.STAFF,
                        )
                    )
                except ValidationError as exc:
                    refused.append(f"{noun(obj).capitalize()} “{obj.name}” was not changed: {' '.join(exc.messages)}")
                except changes.BudgetPlatformUnavailable as exc:
                    refused.append(f"{noun(obj).capitalize()} “{obj.name}” was not changed: {exc}")
            if recorded:
                ids = ", ".join(f"#{run.pk}" for run in recorded)
                self.message_user(
                    request,
                    f"{len(recorded)} change record(s) to {new_status} ({ids}) are being pushed; each shows as "
                    f"applied once the platform confirms.",
                    messages.SUCCESS,
                )
            for problem in refused:
                self.message_user(request, problem, messages.ERROR)
            return None
        opts = self.model._meta
        verb = "Pause" if new_status == CampaignStatus.PAUSED else "Enable"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} {len(objects)} {opts.verbose_name_plural if len(objects) != 1 else opts.verbose_name}?",
            "opts": opts,
            "objects": [
                {
                    "obj": obj,
                    "noun": noun(obj),
                    "url": admin_url(obj, "change"),
                    "already": obj.status == new_status,
                    "removed": obj.status == CampaignStatus.REMOVED,
                }
                for obj in objects
            ],
            "form": form,
            "verb": verb,
            "new_status": new_status,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/optimization/bulk_status_confirmation.html", context)


# --- The screens, registered over the campaigns app's ones -----------------------------------------


class ChangeRecordInline(ReadOnlyInline):
    """The object's change records (budget and status), newest first, each a link to the record."""

    model = OptimizationRun
    fk_name = "campaign"
    verbose_name = "change record"
    verbose_name_plural = "Change records (budget and status)"
    fields = ("record", "created_at", "what", "old", "new", "status", "source", "reason", "requested_by_name")
    readonly_fields = fields
    ordering = ("-created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("campaign__account", "ad_group")

    @admin.display(description="Record")
    def record(self, run: OptimizationRun) -> str:
        url = reverse("admin:optimization_optimizationrun_change", args=[run.pk])
        return format_html('<a href="{}">#{}</a>', url, run.pk)

    @admin.display(description="What")
    def what(self, run: OptimizationRun) -> str:
        text = describe_run(run, run.campaign.account.currency_code)["what"]
        return f"{text} of {run.ad_group.name}" if run.ad_group is not None else text

    @admin.display(description="Old")
    def old(self, run: OptimizationRun) -> str:
        return describe_run(run, run.campaign.account.currency_code)["old"]

    @admin.display(description="New")
    def new(self, run: OptimizationRun) -> str:
        return describe_run(run, run.campaign.account.currency_code)["new"]


class AdGroupChangeRecordInline(ChangeRecordInline):
    fk_name = "ad_group"


class CampaignWithChangesAdmin(ChangeToolsMixin, CampaignAdmin):
    """The campaign screen plus the safe ways to change it: the budget form and pause / enable."""

    inlines = (*CampaignAdmin.inlines, ChangeRecordInline)
    actions = ("change_daily_budget", "pause_selected", "enable_selected")

    @admin.action(description="Change budget (one campaign)", permissions=("change_budget",))
    def change_daily_budget(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one campaign to change its budget.", messages.WARNING)
            return None
        return HttpResponseRedirect(admin_url(queryset.get(), "budget"))


class AdGroupWithChangesAdmin(ChangeToolsMixin, AdGroupAdmin):
    """The ad group / ad set screen plus its budget form (Meta ad set budgets) and pause / enable."""

    inlines = (*AdGroupAdmin.inlines, AdGroupChangeRecordInline)


# The campaigns app defines these screens and leaves their registration to this module, the one
# that adds the ways to change them: no unregistering, nothing that depends on app load order.
admin.site.register(Campaign, CampaignWithChangesAdmin)
admin.site.register(AdGroup, AdGroupWithChangesAdmin)
