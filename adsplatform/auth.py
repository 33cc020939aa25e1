"""Ending a user's sessions: every refresh token blacklisted when the password changes or the
account is deactivated, and the login lockout's answer.

Access tokens are short-lived and never stored, so they are ended differently: SIMPLE_JWT's
CHECK_REVOKE_TOKEN puts a digest of the password hash into every token and JWTAuthentication
refuses a token whose digest no longer matches the user's current password. Deactivation is
refused by CHECK_USER_IS_ACTIVE; the refresh tokens are blacklisted as well, so re-activating a
user does not bring back tokens issued before.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from adsplatform.errors import error_response

logger = logging.getLogger(__name__)

_API_PREFIXES = ("/api/", "/v1/")


def user_tokens_revoke(*, user: Any) -> int:
    """Blacklist every unexpired refresh token of ``user``; returns how many were still live."""
    live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now()).exclude(
        blacklistedtoken__isnull=False
    )
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live.only("pk")], ignore_conflicts=True
    )
    if revoked:
        logger.info("refresh tokens revoked", extra={"user_id": user.pk, "tokens": len(revoked)})
    return len(revoked)


def _remember_credentials_state(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before a save: did the password or the active flag change? (Read back from the database.)"""
    instance._tokens_revoke_pending = False
    if instance.pk is None or (update_fields is not None and not {"password", "is_active"} & set(update_fields)):
        return
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    password_changed = before["password"] != instance.password
    deactivated = before["is_active"] and not instance.is_active
    instance._tokens_revoke_pending = password_changed or deactivated


def _revoke_after_save(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if getattr(instance, "_tokens_revoke_pending", False):
        instance._tokens_revoke_pending = False
        user_tokens_revoke(user=instance)


def connect_signals() -> None:
    """User saves are the one hook every password change and deactivation goes through:
    admin forms, ``changepassword``, password reset, ``set_password`` in code."""
    user_model = get_user_model()
    pre_save.connect(_remember_credentials_state, sender=user_model, dispatch_uid="adsplatform.tokens.pre")
    post_save.connect(_revoke_after_save, sender=user_model, dispatch_uid="adsplatform.tokens.post")


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer to a locked-out login: the API's error shape under /api/, a page elsewhere."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else None
    message = "Too many failed logins for this user from this address; try again later."
    if request.path_info.startswith(_API_PREFIXES):
        response: HttpResponse = error_response(429, "locked_out", message, {"retry_after_seconds": seconds})
    else:
        from django.template.response import TemplateResponse

        response = TemplateResponse(
            request, "admin/locked_out.html", {"message": message, "cooloff_seconds": seconds}, status=429
        )
        response.render()
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
