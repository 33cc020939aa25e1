"""The token blacklist's admin without the tokens: a refresh token's text is a live credential.

simplejwt's own ModelAdmins show every field read-only, so the detail page of an outstanding
token prints the token itself, usable by whoever reads the screen until it expires. Operators
need to see who holds tokens and when they end, never the text.
"""

from __future__ import annotations

from django.contrib import admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

_TOKEN_FIELDS = ("id", "user", "created_at", "expires_at")


class _ReadOnlyAdmin(admin.ModelAdmin):
    actions = None
    list_select_related = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SafeOutstandingTokenAdmin(_ReadOnlyAdmin):
    list_display = _TOKEN_FIELDS
    fields = _TOKEN_FIELDS
    readonly_fields = _TOKEN_FIELDS
    list_filter = ("expires_at",)
    search_fields = ("user__username",)
    ordering = ("-created_at",)


@admin.display(description="user", ordering="token__user")
def _token_user(obj: BlacklistedToken):
    return obj.token.user


@admin.display(description="created at", ordering="token__created_at")
def _token_created_at(obj: BlacklistedToken):
    return obj.token.created_at


@admin.display(description="expires at", ordering="token__expires_at")
def _token_expires_at(obj: BlacklistedToken):
    return obj.token.expires_at


class SafeBlacklistedTokenAdmin(_ReadOnlyAdmin):
    list_display = ("id", _token_user, _token_created_at, _token_expires_at, "blacklisted_at")
    # Callables as read-only rows, as Django renders them; the stubs allow names only here.
    fields = ("id", _token_user, _token_created_at, _token_expires_at, "blacklisted_at")  # type: ignore[assignment]
    readonly_fields = fields  # type: ignore[assignment]
    search_fields = ("token__user__username",)
    ordering = ("-blacklisted_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("token__user")


for _model, _admin_class in (
    (OutstandingToken, SafeOutstandingTokenAdmin),
    (BlacklistedToken, SafeBlacklistedTokenAdmin),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
