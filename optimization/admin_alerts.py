"""Admin screens of alert delivery: where alerts go (one settings row), what was not sent and why,
and the heartbeats of the processes the alert monitor watches.

Destinations reach every alert of every account, so they are an every-account admin's to see and
change (campaigns.admin_scoping.EveryAccountAdmin), like lead destinations. The Slack URL is a
credential: stored encrypted, never put back on screen (only its host, to recognise it).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from campaigns import access
from campaigns.admin_scoping import EveryAccountAdmin
from optimization import alerts, selectors
from optimization.models import AlertNotification, AlertSettings, ProcessHeartbeat

SOURCE_TEXT = {
    "admin": "set here",
    "environment": "from the environment (the default while the field here is blank)",
    "off": "switched off here",
    "none": "not configured (neither here nor in the environment)",
}


class AlertSettingsForm(forms.ModelForm):
    slack_webhook_url = forms.URLField(
        assume_scheme="https",
        required=False,
        max_length=500,
        label="Slack webhook URL",
        help_text="A Slack-compatible incoming webhook (a secret: stored encrypted, never shown back). "
        "Left blank, it stays as it was; blank and never set, ALERT_SLACK_WEBHOOK_URL applies.",
    )
    clear_slack_webhook_url = forms.BooleanField(
        required=False, label="Clear the Slack URL set here (ALERT_SLACK_WEBHOOK_URL applies again)"
    )

    class Meta:
        model = AlertSettings
        fields = ("email_recipients", "email_enabled", "slack_webhook_url", "clear_slack_webhook_url", "slack_enabled")
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["slack_webhook_url"] = ""
        if self.instance.pk and self.instance.slack_webhook_url:
            shown = alerts.AlertDestinations([], "", self.instance.slack_webhook_url, "").slack_display
            self.fields["slack_webhook_url"].widget.attrs["placeholder"] = f"set: {shown} (left blank, it stays)"

    def clean_email_recipients(self) -> str:
        addresses = alerts.parse_recipients(self.cleaned_data.get("email_recipients", ""))
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            raise ValidationError(
                "Not an email address: %(bad)s. Give one address per line (or separate them with commas).",
                params={"bad": ", ".join(bad)},
            )
        return "\n".join(addresses)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_slack_webhook_url"):
            cleaned["slack_webhook_url"] = ""
        elif not cleaned.get("slack_webhook_url"):
            cleaned["slack_webhook_url"] = self.instance.slack_webhook_url or ""
        return cleaned


@admin.register(AlertSettings)
class AlertSettingsAdmin(EveryAccountAdmin):
    """One row: the list opens it, there is nothing to add beside it or delete."""

    view_role = access.ADMIN
    change_role = access.ADMIN
    form = AlertSettingsForm
    actions = None
    readonly_fields = ("in_effect", "not_sent", "updated_at", "updated_by_name")
    fieldsets = (
        ("In effect now", {"fields": ("in_effect", "not_sent")}),
        ("Email", {"fields": ("email_recipients", "email_enabled")}),
        ("Slack", {"fields": ("slack_webhook_url", "clear_slack_webhook_url", "slack_enabled")}),
        (None, {"fields": ("updated_at", "updated_by_name")}),
    )

    def has_add_permission(self, request, *args) -> bool:
        return False  # the row is made on first open (changelist_view)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # Django's own refusal
        row, _ = AlertSettings.objects.get_or_create(pk=AlertSettings.SINGLETON_ID)
        return HttpResponseRedirect(reverse("admin:optimization_alertsettings_change", args=[row.pk]))

    def get_object(self, request, object_id, from_field=None):
        # The one row exists from the first look of someone allowed to see it.
        if str(object_id) == str(AlertSettings.SINGLETON_ID) and self.has_view_permission(request):
            AlertSettings.objects.get_or_create(pk=AlertSettings.SINGLETON_ID)
        return super().get_object(request, object_id, from_field)

    def save_model(self, request, obj: AlertSettings, form, change: bool) -> None:
        obj.updated_by_name = request.user.get_username()[:150]
        super().save_model(request, obj, form, change)

    @admin.display(description="Destinations")
    def in_effect(self, obj: AlertSettings):
        destinations = alerts.alert_destinations()
        email = ", ".join(destinations.email_recipients) or "none"
        slack = destinations.slack_display or "none"
        return format_html(
            "Email: {} — <em>{}</em><br>Slack: {} — <em>{}</em>",
            email,
            SOURCE_TEXT.get(destinations.email_source, destinations.email_source),
            slack,
            SOURCE_TEXT.get(destinations.slack_source, destinations.slack_source),
        )

    @admin.display(description="Not sent yet")
    def not_sent(self, obj: AlertSettings):
        unsent = alerts.notifications_unsent()
        waiting_nowhere = not alerts.alert_destinations().channels and selectors.alerts_awaiting_notification()
        if not unsent and not waiting_nowhere:
            return "Every notification owed has been sent."
        parts = []
        if waiting_nowhere:
            parts.append(
                format_html(
                    "<strong>{} alert notification(s) wait with nowhere to send</strong>: set recipients or a "
                    "Slack URL above; they go out at the monitor's next cycle.",
                    len(waiting_nowhere),
                )
            )
        if unsent:
            url = reverse("admin:optimization_alertnotification_changelist") + "?status__exact=failed"
            rows = format_html_join(
                "",
                "<li>{} · {} · {}: {} attempt(s), next try {} — {}</li>",
                (
                    (
                        n.get_channel_display(),
                        n.get_event_display(),
                        n.alert,
                        n.attempts,
                        f"{n.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if n.next_attempt_at else "now",
                        n.last_error or n.get_status_display(),
                    )
                    for n in unsent[:10]
                ),
            )
            parts.append(format_html('<ul>{}</ul><a href="{}">All notifications not sent</a>', rows, url))
        return format_html_join("", "{}", ((p,) for p in parts))


@admin.register(AlertNotification)
class AlertNotificationAdmin(EveryAccountAdmin):
    """Each message owed, per channel: sent once, or failed with its error and next attempt."""

    view_role = access.ADMIN
    change_role = None
    actions = None
    list_display = ("alert", "event", "channel", "status", "attempts", "last_error", "next_attempt_at", "sent_at")
    list_filter = ("status", "channel", "event")
    list_select_related = ("alert",)
    search_fields = ("alert__subject_label", "alert__message", "last_error")
    readonly_fields = [f.name for f in AlertNotification._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProcessHeartbeat)
class ProcessHeartbeatAdmin(EveryAccountAdmin):
    """Written by beat, the monitor and the worker canary; read by the monitor. Read-only."""

    change_role = None
    actions = None
    list_display = ("name", "beat_at", "started_at", "canary_pending_since", "details")
    readonly_fields = [f.name for f in ProcessHeartbeat._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
