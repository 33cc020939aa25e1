"""The admin's side of campaigns.access: every screen of rows tied to an ad account shows only the
accounts the staff member holds a role on, and what they may change follows their role there.

Django's model permissions are not consulted: the roles replace them (a staff flag only opens
the admin's door), so that the admin, the API and the commands answer the same question the same
way. Superusers are admin everywhere, as in campaigns.access.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet

from campaigns import access
from campaigns.models import AdAccount


def account_id_of(obj: Any, account_field: str) -> int | None:
    """The AdAccount id of a row, following ``account_field`` ("pk", "account", "campaign__account")."""
    if account_field == "pk":
        return obj.pk
    *path, last = account_field.split("__")
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id", None)


class AccountScopedAdmin(admin.ModelAdmin):
    """Rows of the accounts the user may see; changes need ``change_role`` on the row's account.

    Subclasses name the path to the account (``account_field``) and the roles; a subclass that
    must never add, change or delete (synced rows, ledgers) still says so in its own methods,
    which win over these.
    """

    account_field = "account"
    view_role: str | None = access.VIEWER
    change_role: str | None = access.ADVERTISER
    add_role: str | None = access.ADVERTISER
    delete_role: str | None = access.ADMIN

    # --- Reads ---------------------------------------------------------------------------------

    def get_queryset(self, request):
        return access.scope_queryset(super().get_queryset(request), request.user, account_field=self.account_field)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and self._may(request, None, self.view_role)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may(request, obj, self.view_role) or self.has_change_permission(request, obj)

    # --- Writes --------------------------------------------------------------------------------

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may(request, obj, self.change_role)

    def has_add_permission(self, request, *args) -> bool:
        return self._may(request, None, self.add_role)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may(request, obj, self.delete_role)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A form may only point at accounts the user may change things on.
        if db_field.related_model is AdAccount:
            kwargs["queryset"] = access.visible_accounts(request.user, role=self.change_role or access.ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def rows_allowed(self, request, queryset: QuerySet, role: str) -> bool:
        """For actions that write: True when the user holds ``role`` on every selected row's
        account; otherwise nothing is done and the user is told why."""
        allowed = access.scope_queryset(queryset, request.user, account_field=self.account_field, role=role)
        if allowed.count() == queryset.count():
            return True
        self.message_user(request, f"Nothing was changed. {access.ROLE_NEEDED[role]}", messages.ERROR)
        return False

    def _may(self, request, obj, role: str | None) -> bool:
        if role is None:
            return False
        if obj is None:
            return access.has_role_anywhere(request.user, role)
        return access.has_role(request.user, account_id_of(obj, self.account_field), role)


class EveryAccountAdmin(admin.ModelAdmin):
    """Rows that belong to no one account (sources, destinations, routing rules, service keys):
    visible with a role on every account, changed with ``change_role`` on every account."""

    view_role: str | None = access.VIEWER
    change_role: str | None = access.ADMIN

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and self._may(request, self.view_role)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may(request, self.view_role) or self.has_change_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may(request, self.change_role)

    def has_add_permission(self, request, *args) -> bool:
        return self._may(request, self.change_role)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may(request, self.change_role)

    def _may(self, request, role: str | None) -> bool:
        return role is not None and access.access_scope(request.user).covers_every_account(role)
