"""The operator's view of webhooks: inbox with replay, leads with deliveries, rules with a preview."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns import access
from campaigns.admin_scoping import AccountScopedAdmin, EveryAccountAdmin
from webhooks import selectors, services
from webhooks.forms import RoutingRuleForm
from webhooks.models import Destination, Lead, LeadDelivery, LeadStage, RoutingRule, WebhookEvent, WebhookSource

_HIDDEN_VALUE = "(hidden)"


def _redacted_body(raw_body: str) -> str:
    """The stored body, pretty-printed, with Google's google_key hidden from screens."""
    try:
        payload = json.loads(raw_body)
    except ValueError:
        return raw_body
    if isinstance(payload, dict) and "google_key" in payload:
        payload["google_key"] = _HIDDEN_VALUE
    return json.dumps(payload, indent=2, ensure_ascii=False)


class WebhookSourceForm(forms.ModelForm):
    # Rendered as password inputs so a secret is not on screen; left blank it stays as it was.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=WebhookSource._meta.get_field("secret").help_text + " Left blank, it stays as it was.",
    )
    previous_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Still accepted during rotation. Tick “clear previous secret” to end the rotation.",
    )
    clear_previous_secret = forms.BooleanField(required=False)

    class Meta:
        model = WebhookSource
        fields = ("name", "kind", "secret", "previous_secret", "clear_previous_secret", "is_active")

    def clean(self):
        cleaned = super().clean()
        for name in ("secret", "previous_secret"):
            if not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name, "") or ""
        if cleaned.get("clear_previous_secret"):
            cleaned["previous_secret"] = ""
        if not cleaned.get("secret"):
            self.add_error("secret", "A source needs a secret.")
        return cleaned


@admin.register(WebhookSource)
class WebhookSourceAdmin(EveryAccountAdmin):
    """Secrets that let senders in for every account: an admin of every account handles them."""

    view_role = access.ADMIN
    form = WebhookSourceForm
    list_display = ("name", "kind", "is_active", "has_previous_secret", "updated_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        services.webhook_sources_invalidate()  # receivers hold sources in memory

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        services.webhook_sources_invalidate()

    @admin.display(boolean=True, description="Rotating")
    def has_previous_secret(self, obj: WebhookSource) -> bool:
        return bool(obj.previous_secret)


@admin.register(WebhookEvent)
class WebhookEventAdmin(EveryAccountAdmin):
    """Raw bodies, before they are tied to an account: for people who see every account."""

    change_role = None
    list_display = ("id", "source", "status", "dedupe_key", "attempts", "received_at", "processed_at", "lead_link")
    list_filter = ("status", "source")
    search_fields = ("dedupe_key",)
    list_select_related = ("source",)
    date_hierarchy = "received_at"
    show_full_result_count = False
    readonly_fields = (
        "source",
        "dedupe_key",
        "status",
        "attempts",
        "last_error",
        "lead",
        "received_at",
        "processed_at",
        "swept_at",
        "headers",
        "payload",
    )
    exclude = ("raw_body",)
    actions = ("replay",)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return access.access_scope(request.user).covers_every_account(access.ADVERTISER)

    @admin.display(description="Raw payload")
    def payload(self, obj: WebhookEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", _redacted_body(obj.raw_body))

    @admin.display(description="Lead")
    def lead_link(self, obj: WebhookEvent) -> str:
        if not obj.lead_id:
            return "-"
        url = reverse("admin:webhooks_lead_change", args=[obj.lead_id])
        return format_html('<a href="{}">#{}</a>', url, obj.lead_id)

    @admin.action(description="Replay selected events (failed or stuck)", permissions=("replay",))
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        replayed = sum(services.webhook_event_replay(event=event) for event in queryset)
        skipped = queryset.count() - replayed
        self.message_user(request, f"{replayed} event(s) queued again; {skipped} already processed were left alone.")


class LeadDeliveryInline(admin.TabularInline):
    model = LeadDelivery
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("destination", "status", "attempts", "response_code", "last_error", "delivered_at", "updated_at")
    readonly_fields = fields


@admin.register(Lead)
class LeadAdmin(AccountScopedAdmin):
    """Leads of the user's accounts (of no known campaign: for a role on every account); moving a
    lead's stage may create a conversion, so it needs the advertiser role."""

    account_field = "campaign__account"
    add_role = None
    delete_role = None
    list_display = (
        "id",
        "priority",
        "stage",
        "full_name",
        "phone",
        "email",
        "source",
        "campaign",
        "is_test",
        "received_at",
        "matched_rule",
    )
    list_filter = ("priority", "stage", "is_test", "source")
    search_fields = ("external_lead_id", "full_name", "email", "phone", "gclid")
    list_select_related = ("source", "campaign", "matched_rule")
    date_hierarchy = "received_at"
    inlines = (LeadDeliveryInline,)
    readonly_fields = tuple(f.name for f in Lead._meta.fields if f.name not in ("stage",))
    actions = ("mark_contacted", "mark_qualified", "mark_won", "mark_lost", "retry_failed_deliveries")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lead]:
        return access.scope_queryset(selectors.lead_list(), request.user, account_field=self.account_field)

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # The urgent lead first, then the newest: who to call now, not who wrote last.
        return ("priority_rank", "-received_at")

    def save_model(self, request: HttpRequest, obj: Lead, form, change: bool) -> None:
        # The stage goes through the service so the conversion hook fires as from the API.
        if "stage" in form.changed_data:
            new_stage = obj.stage
            obj.stage = form.initial.get("stage", obj.stage)
            services.lead_stage_set(lead=obj, stage=new_stage, actor=request.user)

    def _set_stage(self, request: HttpRequest, queryset: QuerySet[Lead], stage: str) -> None:
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        for lead in queryset:
            services.lead_stage_set(lead=lead, stage=stage, actor=request.user)
        self.message_user(request, f"{queryset.count()} lead(s) set to {LeadStage(stage).label}.")

    @admin.action(description="Set stage: contacted", permissions=("change",))
    def mark_contacted(self, request, queryset):
        self._set_stage(request, queryset, LeadStage.CONTACTED)

    @admin.action(description="Set stage: qualified", permissions=("change",))
    def mark_qualified(self, request, queryset):
        self._set_stage(request, queryset, LeadStage.QUALIFIED)

    @admin.action(description="Set stage: won", permissions=("change",))
    def mark_won(self, request, queryset):
        self._set_stage(request, queryset, LeadStage.WON)

    @admin.action(description="Set stage: lost", permissions=("change",))
    def mark_lost(self, request, queryset):
        self._set_stage(request, queryset, LeadStage.LOST)

    @admin.action(description="Retry failed deliveries", permissions=("change",))
    def retry_failed_deliveries(self, request, queryset):
        if not self.rows_allowed(request, queryset, access.ADVERTISER):
            return
        count = sum(services.lead_deliveries_retry(lead=lead) for lead in queryset)
        self.message_user(request, f"{count} delivery(ies) queued again.")


class RulePreviewForm(forms.Form):
    lead = forms.IntegerField(label="Lead id", min_value=1)


@admin.register(RoutingRule)
class RoutingRuleAdmin(EveryAccountAdmin):
    """Rules route every account's leads: an admin of every account edits them."""

    form = RoutingRuleForm
    list_display = ("name", "position", "is_active", "priority", "destination_names", "preview_link")
    list_editable = ("position", "is_active")
    list_filter = ("is_active", "priority")
    filter_horizontal = ("destinations",)
    ordering = ("position", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingRule]:
        return super().get_queryset(request).prefetch_related("destinations")

    @admin.display(description="Destinations")
    def destination_names(self, obj: RoutingRule) -> str:
        return ", ".join(d.name for d in obj.destinations.all()) or "-"

    @admin.display(description="Test")
    def preview_link(self, obj: RoutingRule) -> str:
        url = reverse("admin:webhooks_routingrule_preview", args=[obj.pk])
        return format_html('<a href="{}">Test against a lead</a>', url)

    # Every way an edit reaches the database tells all processes to reload their rules.
    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        services.routing_rules_invalidate()

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        services.routing_rules_invalidate()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        services.routing_rules_invalidate()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        services.routing_rules_invalidate()

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("<int:rule_id>/preview/", preview, name="webhooks_routingrule_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        rule = get_object_or_404(RoutingRule.objects.prefetch_related("destinations"), pk=rule_id)
        form = RulePreviewForm(request.GET or None)
        results, lead, decision = None, None, None
        if form.is_valid():
            lead = selectors.lead_list().filter(pk=form.cleaned_data["lead"]).first()
            if lead is None:
                form.add_error("lead", "No lead with this id.")
            else:
                results = services.routing_rule_explain(rule=rule, lead=lead)
                decision = services.lead_route(lead=lead)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Test rule “{rule.name}” against a lead",
            "rule": rule,
            "form": form,
            "lead": lead,
            "results": results,
            "rule_matches": results is not None and all(r.matched for r in results),
            "decision": decision,
        }
        return TemplateResponse(request, "admin/webhooks/routingrule/preview.html", context)


class DestinationForm(forms.ModelForm):
    url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=500,
        help_text="CRM or Slack webhook URL (a secret for Slack).",
    )
    signing_secret = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False)

    class Meta:
        model = Destination
        fields = ("name", "kind", "url", "signing_secret", "recipients", "is_active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A Slack URL is a credential: never put back on screen, only its host to recognise it.
        if self.instance.pk and self.instance.url:
            self.initial["url"] = ""
            host = urlsplit(self.instance.url).netloc
            self.fields["url"].widget.attrs["placeholder"] = f"set: https://{host}/… (left blank, it stays as it was)"

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("url") and self.instance.pk:
            cleaned["url"] = self.instance.url or ""
        if not cleaned.get("signing_secret"):
            cleaned["signing_secret"] = self.instance.signing_secret or ""
        kind = cleaned.get("kind")
        if kind in (Destination.Kind.CRM, Destination.Kind.SLACK) and not cleaned.get("url"):
            self.add_error("url", "A CRM or Slack destination needs a URL.")
        if kind == Destination.Kind.EMAIL and not cleaned.get("recipients"):
            self.add_error("recipients", "An email destination needs recipients.")
        return cleaned


@admin.register(Destination)
class DestinationAdmin(EveryAccountAdmin):
    """Where leads go (a Slack URL is a credential): an admin of every account handles them."""

    view_role = access.ADMIN
    form = DestinationForm
    # The URL is not listed: a Slack webhook URL is a credential.
    list_display = ("name", "kind", "is_active", "updated_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name",)
    actions = ("rotate_signing_secret",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        services.routing_rules_invalidate()  # compiled rules carry only active destinations

    # A write: offered only to who may change destinations (an admin of every account).
    @admin.action(description="Rotate the signing secret (the old one signs for 24 hours more)", permissions=["change"])
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset.filter(kind=Destination.Kind.CRM):
            new_secret = services.destination_rotate_signing_secret(destination)
            # Shown once, to the admin who rotated it, so the CRM can be given the new secret.
            self.message_user(request, f"{destination.name}: new signing secret {new_secret}")

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        services.routing_rules_invalidate()
