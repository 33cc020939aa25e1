"""Operator screens for accounts, campaigns, ad groups, metrics and sync runs; actions call services.

What the platforms own (accounts' identity, campaigns, ad groups / ad sets, daily metrics) is
shown here and never edited: a value typed in admin would change nothing on the platform and
the next sync would put it back. Budgets and status change through the guarded forms the
optimization app adds to these screens (they push to the platform and keep an audit trail).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.views.main import ChangeList
from django.db.models import BigIntegerField, Case, DateField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from campaigns import access, services
from campaigns.admin_scoping import AccountScopedAdmin
from campaigns.backfill import backfills_unfinished
from campaigns.models import (
    AccountAccess,
    AdAccount,
    AdGroup,
    AdGroupDailyMetric,
    BudgetLevel,
    Campaign,
    DailyMetric,
    SyncRun,
)
from platforms.base import PlatformError, format_money

if TYPE_CHECKING:
    # The stubs' name for what ModelAdmin.fieldsets holds (a title and its options per fieldset).
    from django.contrib.admin.options import _FieldsetSpec

SPARKLINE_DAYS = 30
# The templates below render charts through the project's template tags (adsplatform), so this
# app imports nothing from the floor above it.
SPARKLINE_TEMPLATE = "admin/campaigns/campaign/spend_sparkline.html"
PACING_TEMPLATE = "admin/campaigns/campaign/budget_pacing.html"


def lifetime_text(obj: Campaign | AdGroup, lifetime_micros: int | None) -> str:
    """A lifetime budget with what is left of it and when it ends: "1,200 JPY · 300 JPY left · ends …"."""
    if lifetime_micros is None:
        return "—"
    currency = obj.account.currency_code
    parts = [format_money(lifetime_micros, currency)]
    if obj.budget_remaining_micros is not None:
        parts.append(f"{format_money(obj.budget_remaining_micros, currency)} left")
    if obj.end_time:
        parts.append(f"ends {timezone.localtime(obj.end_time):%Y-%m-%d %H:%M}")
    return " · ".join(parts)


def budget_text(obj: Campaign | AdGroup) -> str:
    """Where the budget is and how much: "50.00 USD / day", "1,200 JPY lifetime", "on its ad sets"."""
    currency = obj.account.currency_code
    if isinstance(obj, Campaign) and obj.budget_level == BudgetLevel.AD_GROUP:
        return "on its ad sets"
    lifetime = obj.budget_micros if isinstance(obj, Campaign) else obj.lifetime_budget_micros
    if obj.daily_budget_micros is not None:
        shared = " (shared)" if isinstance(obj, Campaign) and obj.budget_is_shared else ""
        return f"{format_money(obj.daily_budget_micros, currency)} / day{shared}"
    if lifetime is not None:
        return f"{format_money(lifetime, currency)} lifetime"
    if isinstance(obj, AdGroup):
        return "on its campaign" if obj.platform == "meta" else "on its campaign (ad groups have none)"
    return "—"


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, edited or deleted here. Seeing them follows
    the parent page (already scoped to the user's accounts), not Django's model permissions,
    which the roles replace."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_view_permission(self, request, obj=None) -> bool:
        return True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# What the platform owns about an account: shown, never edited here (the next sync would undo it).
ACCOUNT_PLATFORM_FIELDS = ("platform", "external_id", "name", "currency_code", "time_zone", "manager_customer_id")


@admin.register(AdAccount)
class AdAccountAdmin(AccountScopedAdmin):
    """Accounts come from the platforms (Discover) and are never added or deleted by hand; an
    account's admin sets whether and how often it syncs, an advertiser may sync it now."""

    account_field = "pk"
    change_role = access.ADMIN
    add_role = None
    delete_role = None
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
    readonly_fields = (
        *ACCOUNT_PLATFORM_FIELDS,
        "last_synced_at",
        "attention_reason",
        "created_at",
        "updated_at",
        "connection",  # an account changes connection through the Connect flow only
    )
    actions = ("sync_now", "clear_attention")
    change_list_template = "admin/campaigns/adaccount/change_list.html"

    def has_sync_permission(self, request) -> bool:
        return access.has_role_anywhere(request.user, access.ADVERTISER)

    def may_discover(self, request) -> bool:
        """Discovery adds accounts for everyone: an admin of every account only."""
        return access.access_scope(request.user).covers_every_account(access.ADMIN)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, extra_context={**(extra_context or {}), "may_discover": self.may_discover(request)}
        )

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
        # last_run_id and last_run_status are annotated by get_queryset.
        last_run_id = getattr(obj, "last_run_id", None)
        if not last_run_id:
            return "—"
        url = reverse("admin:campaigns_syncrun_change", args=[last_run_id])
        return format_html('<a href="{}">#{} {}</a>', url, last_run_id, getattr(obj, "last_run_status", ""))

    @admin.action(description="Sync now", permissions=("sync",))
    def sync_now(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        runs = [services.sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL) for account in queryset]
        self.message_user(request, f"Queued {len(runs)} sync run(s); progress shows under Sync runs.", messages.SUCCESS)

    @admin.action(description="Clear 'needs attention' (credentials fixed)", permissions=("sync",))
    def clear_attention(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        for account in queryset:
            services.account_clear_attention(account=account)
        self.message_user(request, f"Cleared {queryset.count()} account(s); scheduled syncs resume.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("discover/", self.admin_site.admin_view(self.discover_view), name="campaigns_adaccount_discover"),
            *super().get_urls(),
        ]

    def discover_view(self, request):
        if request.method != "POST" or not self.may_discover(request):
            return HttpResponseRedirect(reverse("admin:campaigns_adaccount_changelist"))
        try:
            accounts = services.account_discover()
        except PlatformError as exc:
            self.message_user(request, f"Could not list accounts: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"Discovered {len(accounts)} account(s); they are up to date.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:campaigns_adaccount_changelist"))


class DailyMetricInline(ReadOnlyInline):
    model: type[DailyMetric | AdGroupDailyMetric] = DailyMetric
    fields = ("date", "impressions", "clicks", "cost", "conversions", "conversion_value")
    readonly_fields = fields
    verbose_name_plural = "Recent daily metrics"

    def get_queryset(self, request):
        parent = self.fk_name or "campaign"
        since = _first_day_in_account_dates(days=15, zone_field=f"{parent}__account__time_zone")
        return (
            super().get_queryset(request).select_related(f"{parent}__account").filter(date__gte=since).order_by("-date")
        )

    @admin.display(description="Cost")
    def cost(self, row) -> str:
        return format_money(row.cost_micros, self._currency(row))

    @admin.display(description="Conversion value")
    def conversion_value(self, row) -> str:
        return format_money(row.conversion_value_micros, self._currency(row))

    def _currency(self, row) -> str:
        return row.campaign.account.currency_code


class AdGroupDailyMetricInline(DailyMetricInline):
    model = AdGroupDailyMetric
    fk_name = "ad_group"

    def _currency(self, row) -> str:
        return row.ad_group.account.currency_code


def _first_day_in_account_dates(*, days: int, zone_field: str) -> Case:
    """The first of the last ``days`` days in each row's own account dates (metric dates are the
    account's): the site's date would shift the window a day for an account ahead of or behind UTC."""
    return Case(
        *(
            When(**{zone_field: time_zone}, then=Value(today - timedelta(days=days - 1)))
            for time_zone, today in services.todays_by_time_zone().items()
        ),
        default=Value(timezone.localdate() - timedelta(days=days - 1)),
        output_field=DateField(),
    )


def _spend_since(days: int):
    """Spend of the last ``days`` account days; campaigns and ad groups both name their metrics
    ``daily_metrics`` and their account ``account``."""
    since = _first_day_in_account_dates(days=days, zone_field="account__time_zone")
    return Coalesce(
        Sum("daily_metrics__cost_micros", filter=Q(daily_metrics__date__gte=since)),
        Value(0),
        output_field=BigIntegerField(),
    )


# The attribute the changelist attaches to each campaign of its page: the sparkline's daily spend.
SPEND_SERIES = "spend_series"


def _attach_spend_series(campaigns: list[Campaign]) -> None:
    """Give each campaign of a page its last 30 days of spend (its account's dates), in one query."""
    if not campaigns:
        return
    todays = {c.account_id: services.account_today(c.account) for c in campaigns}
    first_day = min(todays.values()) - timedelta(days=SPARKLINE_DAYS - 1)
    rows = DailyMetric.objects.filter(
        campaign_id__in=[c.pk for c in campaigns], date__gte=first_day, date__lte=max(todays.values())
    ).values_list("campaign_id", "date", "cost_micros")
    spend: dict[tuple, int] = {(campaign_id, day): cost for campaign_id, day, cost in rows}
    for campaign in campaigns:
        today = todays[campaign.account_id]
        days = [today - timedelta(days=offset) for offset in range(SPARKLINE_DAYS - 1, -1, -1)]
        setattr(campaign, SPEND_SERIES, [spend.get((campaign.pk, day), 0) for day in days])


class CampaignChangeList(ChangeList):
    """The campaign list, plus one query for the page's spend sparklines (not one per row)."""

    def get_results(self, request) -> None:
        super().get_results(request)
        _attach_spend_series(list(self.result_list))  # the page's queryset caches what it loaded


class AdGroupInline(ReadOnlyInline):
    """The campaign's ad groups / ad sets, each a link to its own page (budget, pause, metrics)."""

    model = AdGroup
    fk_name = "campaign"
    fields = ("ad_group", "status", "budget", "spend_7d")
    readonly_fields = fields
    verbose_name = "ad group / ad set"
    verbose_name_plural = "Ad groups / ad sets"

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("account").annotate(spend_7=_spend_since(7)).order_by("name")
        )

    @admin.display(description="Ad group / ad set")
    def ad_group(self, obj: AdGroup) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_adgroup_change", args=[obj.pk]), obj.name)

    @admin.display(description="Budget")
    def budget(self, obj: AdGroup) -> str:
        return budget_text(obj)

    @admin.display(description="Spend 7d")
    def spend_7d(self, obj: AdGroup) -> str:
        return format_money(getattr(obj, "spend_7", None), obj.account.currency_code)


# Shown on a campaign's page: every field the platform owns, read-only, money in its currency.
CAMPAIGN_FIELDSETS: _FieldsetSpec = (
    (None, {"fields": ("name", "account", "platform", "external_id", "status", "synced_at")}),
    ("Budget", {"fields": ("budget", "budget_pacing", "budget_where", "lifetime")}),
    ("Record", {"classes": ("collapse",), "fields": ("id", "budget_external_id", "created_at", "updated_at")}),
)


# Not registered here: optimization/admin_changes.py registers it with the change tools (budget and
# status forms), the only ways to change what the platforms own. One registration, whatever the
# order the apps load in.
class CampaignAdmin(AccountScopedAdmin):
    """Synced from the platforms: every field is the platform's, so the page is read-only (a name
    or status edited here would be put back by the next sync). Budgets and status change through
    the forms the optimization app adds, which push to the platform."""

    change_role = None
    add_role = None
    delete_role = None
    list_display = (
        "name",
        "platform",
        "account",
        "status",
        "budget",
        "spend_7d",
        "spend_30d",
        "spend_trend",
        "synced_at",
    )
    list_filter = (
        "platform",
        "status",
        "budget_level",
        "budget_is_shared",
        ("account", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("name", "external_id", "account__name")
    list_select_related = ("account",)
    fieldsets = CAMPAIGN_FIELDSETS
    inlines: ClassVar[tuple[type[InlineModelAdmin[Any, Any]], ...]] = (AdGroupInline, DailyMetricInline)

    def get_readonly_fields(self, request, obj=None):
        # Every field, whatever the role: nothing on this page is typed in.
        return [name for _title, options in self.get_fieldsets(request, obj) for name in options["fields"]]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(spend_7=_spend_since(7), spend_30=_spend_since(30))

    def get_changelist(self, request, **kwargs):
        return CampaignChangeList

    @admin.display(description="Spend, last 30 days")
    def spend_trend(self, obj: Campaign) -> SafeString | str:
        series = getattr(obj, SPEND_SERIES, None)
        if series is None:
            return "—"
        currency = obj.account.currency_code
        label = (
            f"{obj.name}: spend per day over the last {SPARKLINE_DAYS} days, "
            f"{format_money(sum(series), currency)} in total, {format_money(series[-1], currency)} today"
        )
        return render_to_string(SPARKLINE_TEMPLATE, {"values": series, "label": label, "chart_id": f"spark-{obj.pk}"})

    @admin.display(description="Pacing")
    def budget_pacing(self, obj: Campaign) -> SafeString | str:
        """Today's and the month's spend beside the budget, read in one query, and the last changes."""
        if obj.pk is None:
            return "—"
        today = services.account_today(obj.account)
        month_start = today.replace(day=1)
        first_day = min(month_start, today - timedelta(days=SPARKLINE_DAYS - 1))
        spend = dict(
            DailyMetric.objects.filter(campaign=obj, date__gte=first_day, date__lte=today).values_list(
                "date", "cost_micros"
            )
        )
        currency = obj.account.currency_code
        month_spend = sum(cost for day, cost in spend.items() if day >= month_start)
        series = [spend.get(today - timedelta(days=offset), 0) for offset in range(SPARKLINE_DAYS - 1, -1, -1)]
        allowance = obj.daily_budget_micros * today.day if obj.daily_budget_micros else None
        return render_to_string(
            PACING_TEMPLATE,
            {
                "campaign": obj,
                "today": today,
                "daily_budget": budget_text(obj),
                "spend_today": format_money(spend.get(today, 0), currency),
                "spend_today_share": _share(spend.get(today, 0), obj.daily_budget_micros),
                "spend_month": format_money(month_spend, currency),
                "allowance": format_money(allowance, currency),
                "spend_month_share": _share(month_spend, allowance),
                "series": series,
                "series_label": f"Spend per day over the last {SPARKLINE_DAYS} days: {format_money(sum(series), currency)}",
            },
        )

    @admin.display(description="Budget", ordering="daily_budget_micros")
    def budget(self, obj: Campaign) -> str:
        return budget_text(obj)

    @admin.display(description="Budget lives")
    def budget_where(self, obj: Campaign) -> str:
        if obj.budget_level == BudgetLevel.AD_GROUP:
            return "On the campaign's ad sets (Meta ad set budgets): each ad set below has its own."
        if obj.budget_is_shared:
            return "On a Google budget shared with other campaigns: changing it changes theirs too."
        return "On the campaign."

    @admin.display(description="Lifetime budget")
    def lifetime(self, obj: Campaign) -> str:
        return lifetime_text(obj, obj.budget_micros)

    @admin.display(description="Spend 7d", ordering="spend_7")
    def spend_7d(self, obj: Campaign) -> str:
        return format_money(getattr(obj, "spend_7", None), obj.account.currency_code)

    @admin.display(description="Spend 30d", ordering="spend_30")
    def spend_30d(self, obj: Campaign) -> str:
        return format_money(getattr(obj, "spend_30", None), obj.account.currency_code)


class AdGroupCampaignFilter(admin.SimpleListFilter):
    """By campaign. An account can hold thousands: the choices are the chosen account's
    campaigns (or the first hundred by name), plus the campaign already chosen."""

    title = "campaign"
    parameter_name = "campaign"
    LIMIT = 100

    def lookups(self, request, model_admin):
        campaigns = access.scope_queryset(Campaign.objects.filter(ad_groups__isnull=False), request.user).distinct()
        account = request.GET.get("account__id__exact", "")
        if account.isdigit():
            campaigns = campaigns.filter(account_id=int(account))
        choices = list(campaigns.order_by("name").values_list("pk", "name")[: self.LIMIT])
        chosen = self._chosen()
        if chosen and all(pk != chosen for pk, _ in choices):
            choices += list(
                access.scope_queryset(Campaign.objects.filter(pk=chosen), request.user).values_list("pk", "name")
            )
        return [(str(pk), name) for pk, name in choices]

    def _chosen(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.value()) if self.value() else None
        except ValueError:
            return None

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        chosen = self._chosen()
        return queryset.filter(campaign_id=chosen) if chosen else queryset.none()


AD_GROUP_FIELDSETS: _FieldsetSpec = (
    (None, {"fields": ("name", "campaign_link", "account", "platform", "external_id", "status", "synced_at")}),
    ("Budget", {"fields": ("budget", "lifetime")}),
    ("Record", {"classes": ("collapse",), "fields": ("id", "created_at", "updated_at")}),
)


# Registered with its change tools by optimization/admin_changes.py, as CampaignAdmin is.
class AdGroupAdmin(AccountScopedAdmin):
    """Google ad groups and Meta ad sets, synced like campaigns and read-only like them: a Meta
    ad-set budget and every status change go through the optimization app's forms."""

    change_role = None
    add_role = None
    delete_role = None
    list_display = ("name", "campaign_link", "account", "platform", "status", "budget", "spend_7d", "synced_at")
    list_filter = (
        AdGroupCampaignFilter,
        ("account", admin.RelatedOnlyFieldListFilter),
        "platform",
        "status",
    )
    search_fields = ("name", "external_id", "campaign__name")
    list_select_related = ("campaign", "account")
    fieldsets = AD_GROUP_FIELDSETS
    inlines: ClassVar[tuple[type[InlineModelAdmin[Any, Any]], ...]] = (AdGroupDailyMetricInline,)
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, options in self.get_fieldsets(request, obj) for name in options["fields"]]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(spend_7=_spend_since(7))

    @admin.display(description="Campaign", ordering="campaign__name")
    def campaign_link(self, obj: AdGroup) -> str:
        url = reverse("admin:campaigns_campaign_change", args=[obj.campaign_id])
        return format_html('<a href="{}">{}</a>', url, obj.campaign.name)

    @admin.display(description="Budget", ordering="daily_budget_micros")
    def budget(self, obj: AdGroup) -> str:
        return budget_text(obj)

    @admin.display(description="Lifetime budget")
    def lifetime(self, obj: AdGroup) -> str:
        return lifetime_text(obj, obj.lifetime_budget_micros)

    @admin.display(description="Spend 7d", ordering="spend_7")
    def spend_7d(self, obj: AdGroup) -> str:
        return format_money(getattr(obj, "spend_7", None), obj.account.currency_code)


@admin.register(DailyMetric)
class DailyMetricAdmin(AccountScopedAdmin):
    account_field = "campaign__account"
    change_role = None
    add_role = None
    delete_role = None
    list_display = ("campaign", "date", "impressions", "clicks", "cost", "conversions", "conversion_value")
    list_filter = ("campaign__platform", "date")
    search_fields = ("campaign__name", "campaign__external_id")
    list_select_related = ("campaign__account",)
    date_hierarchy = "date"
    raw_id_fields = ("campaign",)
    show_full_result_count = False
    fields = ("campaign", "date", "impressions", "clicks", "cost", "conversions", "conversion_value", "updated_at")
    readonly_fields = fields

    @admin.display(description="Cost", ordering="cost_micros")
    def cost(self, row: DailyMetric) -> str:
        return format_money(row.cost_micros, row.campaign.account.currency_code)

    @admin.display(description="Conversion value", ordering="conversion_value_micros")
    def conversion_value(self, row: DailyMetric) -> str:
        return format_money(row.conversion_value_micros, row.campaign.account.currency_code)


def _share(part: int, whole: int | None) -> str:
    return f"{100 * part / whole:.0f}%" if whole else ""


def _elapsed_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


ACTIVE_SYNC_STATUSES = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)


@admin.register(SyncRun)
class SyncRunAdmin(AccountScopedAdmin):
    """Sync runs; while one is queued or running its pages refresh themselves (see the templates)."""

    change_role = None
    add_role = None
    delete_role = None

    list_display = (
        "id",
        "account",
        "trigger",
        "status",
        "campaigns_synced",
        "metric_rows_synced",
        "elapsed",
        "progress",
        "error_class",
        "created_at",
    )
    list_filter = ("status", "trigger", "account__platform", ("account", admin.RelatedOnlyFieldListFilter))
    search_fields = ("account__name", "error_message")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in SyncRun._meta.fields] + ["duration_seconds"]

    @admin.display(description="Elapsed", ordering="started_at")
    def elapsed(self, obj: SyncRun) -> str:
        if obj.status == SyncRun.Status.QUEUED:
            return f"waiting {_elapsed_text((timezone.now() - obj.created_at).total_seconds())}"
        text = _elapsed_text(obj.duration_seconds)
        return f"{text} so far" if obj.status == SyncRun.Status.RUNNING else text

    def changelist_view(self, request, extra_context=None):
        active = access.scope_queryset(SyncRun.objects.filter(status__in=ACTIVE_SYNC_STATUSES), request.user).count()
        context = {
            **(extra_context or {}),
            "syncs_in_progress": active,
            "backfills": backfills_unfinished(access.visible_accounts(request.user)),
        }
        return super().changelist_view(request, extra_context=context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = SyncRun.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        context = {**(extra_context or {})}
        if run is not None:
            context.update(
                sync_is_active=run.status in ACTIVE_SYNC_STATUSES,
                sync_elapsed=self.elapsed(run),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(AccountAccess)
class AccountAccessAdmin(AccountScopedAdmin):
    """Who may do what on which account. An account's admin manages its grants; grants on every
    account (an empty account) are for an admin of every account."""

    view_role = access.ADMIN
    change_role = access.ADMIN
    add_role = access.ADMIN
    delete_role = access.ADMIN
    list_display = ("grantee", "account_display", "role", "granted_by", "updated_at")
    list_filter = ("role", ("account", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__username", "user__email", "group__name", "account__name", "account__external_id")
    list_select_related = ("user", "group", "account")
    fields = ("user", "group", "account", "role", "granted_by")
    readonly_fields = ("granted_by",)

    @admin.display(description="Who", ordering="user__username")
    def grantee(self, obj: AccountAccess) -> str:
        if obj.user is not None:
            return obj.user.get_username()
        return f"group: {obj.group.name}" if obj.group is not None else "—"

    @admin.display(description="Account", ordering="account__name")
    def account_display(self, obj: AccountAccess) -> str:
        return str(obj.account) if obj.account_id else "every account"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "account" in form.base_fields and not access.access_scope(request.user).covers_every_account(access.ADMIN):
            form.base_fields["account"].required = True
            form.base_fields["account"].empty_label = None
        return form

    def save_model(self, request, obj: AccountAccess, form, change: bool) -> None:
        # The form limits the choices; this is the rule itself, asked like every other write.
        access.require_role(request.user, obj.account_id, access.ADMIN)
        obj.granted_by = request.user.get_username()
        super().save_model(request, obj, form, change)
