"""Connections in admin: the list with Connect buttons, each connection's health, accounts and
backfill, Reconnect and Disconnect. No field ever shows a credential."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from campaigns import access
from campaigns.admin_scoping import EveryAccountAdmin
from campaigns.backfill import backfill_status
from connections import services
from connections.models import Connection

_SHOWN = (
    "label",
    "platform",
    "kind",
    "status",
    "status_reason",
    "expires_at",
    "external_user_id",
    "login_customer_id",
    "business_id",
    "scopes",
    "last_checked_at",
    "created_by",
    "created_at",
    "updated_at",
)


@admin.register(Connection)
class ConnectionAdmin(EveryAccountAdmin):
    """Added through the Connect flows, never by hand; history stays (no delete)."""

    view_role = access.ADMIN
    change_role = access.ADMIN
    list_display = ("label", "platform", "kind", "status", "expires_at", "account_count", "last_checked_at")
    list_filter = ("platform", "kind", "status")
    search_fields = ("label", "external_user_id")
    fields = (*_SHOWN, "accounts_and_backfill")
    readonly_fields = fields
    actions = ("check_health", "disconnect")
    change_list_template = "admin/connections/connection/change_list.html"
    change_form_template = "admin/connections/connection/change_form.html"

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("accounts")

    @admin.display(description="Accounts")
    def account_count(self, obj: Connection) -> int:
        return len(obj.accounts.all())

    @admin.display(description="Accounts and first backfill")
    def accounts_and_backfill(self, obj: Connection) -> str:
        accounts = list(obj.accounts.all())
        if not accounts:
            return "No account yet: pick some from the list this login reaches."
        progress = backfill_status(accounts)
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a> ({}) — {}{}</li>',
                (
                    (
                        reverse("admin:campaigns_adaccount_change", args=[a.pk]),
                        a.name,
                        a.external_id,
                        progress[a.pk],
                        "" if a.is_active else ", syncs stopped",
                    )
                    for a in accounts
                ),
            ),
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        connection = self.get_object(request, object_id) if object_id else None
        extra = {**(extra_context or {})}
        if connection is not None:
            extra["reconnect_url"] = _reconnect_url(connection)
            extra["accounts_url"] = reverse("connect-accounts", args=[connection.pk])
            extra["disconnect_url"] = reverse("connect-disconnect", args=[connection.pk])
            extra["may_disconnect"] = connection.kind != Connection.Kind.ENVIRONMENT and (
                connection.status != Connection.Status.REVOKED
            )
        return super().changeform_view(request, object_id, form_url, extra_context=extra)

    @admin.action(description="Check the credentials now", permissions=("change",))
    def check_health(self, request, queryset):
        report = services.HealthReport()
        for connection in queryset:
            services.connection_check(connection=connection, report=report)
        self.message_user(
            request,
            f"Checked {report.checked}: {report.flagged} need reconnecting, {report.reexchanged} token(s) renewed, "
            f"{report.unreachable} platform(s) unreachable.",
            messages.WARNING if report.flagged or report.unreachable else messages.SUCCESS,
        )

    @admin.action(description="Disconnect (revoke at the platform, stop the accounts' syncs)", permissions=("change",))
    def disconnect(self, request, queryset):
        done = 0
        for connection in queryset:
            try:
                services.connection_disconnect(connection=connection, actor=request.user)
                done += 1
            except services.ConnectError as exc:
                self.message_user(request, f"{connection.label}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"Disconnected {done} connection(s); their history stays.", messages.SUCCESS)


def _reconnect_url(connection: Connection) -> str:
    if connection.kind == Connection.Kind.OAUTH:
        name = "connect-google" if connection.platform == "google" else "connect-meta"
    elif connection.kind == Connection.Kind.SERVICE_ACCOUNT:
        name = "connect-google-service-account"
    elif connection.kind == Connection.Kind.SYSTEM_USER:
        name = "connect-meta-system-user"
    else:
        return ""
    return f"{reverse(name)}?reconnect={connection.pk}"
