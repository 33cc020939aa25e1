"""The browser side of connecting: start the platform's sign-in, take its callback, pick accounts,
paste a service account key or a system user token, disconnect.

Thin: every step is a service call. Staff log in through the admin; connecting, reconnecting and
disconnecting add or stop accounts for everyone, so they need the admin role on every account
(a 403 page otherwise). Nothing here ever renders a token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.models import AdAccount, Platform
from connections import selectors, services
from connections.models import Connection
from platforms.base import PlatformError

logger = logging.getLogger(__name__)

_NAMES: dict[str, str] = {Platform.GOOGLE: "Google Ads", Platform.META: "Meta"}


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), **extra}


def _refuse(request: HttpRequest, message: str, status: int = 400, *, back: str = "") -> HttpResponse:
    return render(
        request,
        "connections/error.html",
        _context(request, title="Connection not made", message=message, back=back or _changelist()),
        status=status,
    )


def _changelist() -> str:
    return reverse("admin:connections_connection_changelist")


def manager_required(view):
    """Staff login (else the admin's login page), then the admin role on every account."""

    @staff_member_required
    @never_cache
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not selectors.may_manage_connections(request.user):
            return _refuse(
                request, "Connecting platforms needs the admin role on every account (or a superuser).", status=403
            )
        return view(request, *args, **kwargs)

    return wrapped


def _reconnect_target(request: HttpRequest, platform: str) -> Connection | None:
    raw = request.GET.get("reconnect", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise services.ConnectError("reconnect must be a connection id (digits).")
    return get_object_or_404(Connection, pk=int(raw), platform=platform)


def _start(request: HttpRequest, platform: str, callback_name: str) -> HttpResponse:
    try:
        reconnect = _reconnect_target(request, platform)
        url = services.connect_flow_start(
            session=request.session,
            platform=platform,
            redirect_uri=request.build_absolute_uri(reverse(callback_name)),
            reconnect=reconnect,
        )
    except services.ConnectError as exc:
        return _refuse(request, str(exc))
    return HttpResponseRedirect(url)


@sensitive_variables("params")
def _finish(request: HttpRequest, platform: str) -> HttpResponse:
    params = {key: request.GET.get(key, "")[:2048] for key in ("state", "code", "error")}
    try:
        connection = services.connect_flow_finish(
            session=request.session, platform=platform, params=params, actor=request.user
        )
    except services.ConnectError as exc:
        return _refuse(request, str(exc))
    messages.success(request, f"{_NAMES[platform]} connected: {connection.label}. Pick the accounts to sync.")
    return HttpResponseRedirect(reverse("connect-accounts", args=[connection.pk]))


@require_GET
@manager_required
def connect_google(request: HttpRequest) -> HttpResponse:
    return _start(request, Platform.GOOGLE, "connect-google-callback")


@require_GET
@manager_required
def connect_google_callback(request: HttpRequest) -> HttpResponse:
    return _finish(request, Platform.GOOGLE)


@require_GET
@manager_required
def connect_meta(request: HttpRequest) -> HttpResponse:
    return _start(request, Platform.META, "connect-meta-callback")


@require_GET
@manager_required
def connect_meta_callback(request: HttpRequest) -> HttpResponse:
    return _finish(request, Platform.META)


@sensitive_post_parameters("key")
@require_http_methods(["GET", "POST"])
@manager_required
def connect_google_service_account(request: HttpRequest) -> HttpResponse:
    return _paste_credentials(
        request,
        template="connections/service_account.html",
        reconnect=_paste_target(request, Platform.GOOGLE, Connection.Kind.SERVICE_ACCOUNT),
        connect=lambda post, reconnect: services.connection_add_service_account(
            key_json=post.get("key", "")[:20000],
            login_customer_id=post.get("login_customer_id", "")[:32],
            actor=request.user,
            reconnect=reconnect,
        ),
        connected="Service account connected",
    )


@sensitive_post_parameters("token")
@require_http_methods(["GET", "POST"])
@manager_required
def connect_meta_system_user(request: HttpRequest) -> HttpResponse:
    return _paste_credentials(
        request,
        template="connections/system_user.html",
        reconnect=_paste_target(request, Platform.META, Connection.Kind.SYSTEM_USER),
        connect=lambda post, reconnect: services.connection_add_system_user(
            token=post.get("token", "")[:4096],
            business_id=post.get("business_id", "")[:32],
            actor=request.user,
            reconnect=reconnect,
        ),
        connected="System user connected",
    )


def _paste_credentials(
    request: HttpRequest,
    *,
    template: str,
    reconnect: Connection | None,
    connect: Callable[[QueryDict, Connection | None], Connection],
    connected: str,
) -> HttpResponse:
    """The pasted-credentials page: GET shows the form, POST connects and goes on to pick accounts."""
    if request.method == "POST":
        try:
            connection = connect(request.POST, reconnect)
        except services.ConnectError as exc:
            return _paste_page(request, template, str(exc), reconnect, status=400)
        messages.success(request, f"{connected}: {connection.label}. Pick the accounts to sync.")
        return HttpResponseRedirect(reverse("connect-accounts", args=[connection.pk]))
    return _paste_page(request, template, "", reconnect)


def _paste_target(request: HttpRequest, platform: str, kind: str) -> Connection | None:
    raw = request.GET.get("reconnect", "")
    if not raw.isdigit():
        return None
    return get_object_or_404(Connection, pk=int(raw), platform=platform, kind=kind)


def _paste_page(
    request: HttpRequest, template: str, error: str, reconnect: Connection | None, status: int = 200
) -> HttpResponse:
    # The pasted secret is never rendered back, even after a refusal.
    return render(
        request,
        template,
        _context(request, title="Add credentials", error=error, reconnect=reconnect, back=_changelist()),
        status=status,
    )


@require_http_methods(["GET", "POST"])
@manager_required
def connect_accounts(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(Connection, pk=connection_id)
    if request.method == "POST":
        try:
            picked = services.connection_pick_accounts(
                connection=connection, external_ids=request.POST.getlist("account")[:500], actor=request.user
            )
        except services.ConnectError as exc:
            return _pick_page(request, connection, error=str(exc), status=400)
        messages.success(
            request,
            f"{len(picked)} account(s) added to {connection.label}; their first backfill shows under Sync runs.",
        )
        return HttpResponseRedirect(reverse("admin:campaigns_syncrun_changelist"))
    return _pick_page(request, connection)


def _pick_page(request: HttpRequest, connection: Connection, *, error: str = "", status: int = 200) -> HttpResponse:
    try:
        reachable = services.connection_reachable_accounts(connection)
    except (services.ConnectError, PlatformError) as exc:
        return _refuse(request, f"The accounts of {connection.label} could not be listed: {exc}")
    existing = {
        a.external_id: a
        for a in AdAccount.objects.filter(
            platform=connection.platform, external_id__in=[r.external_id for r in reachable]
        ).select_related("connection")
    }
    rows = [
        {
            "account": found,
            "existing": existing.get(found.external_id),
            "here": (existing.get(found.external_id) is not None)
            and existing[found.external_id].connection_id == connection.pk,
        }
        for found in reachable
    ]
    return render(
        request,
        "connections/pick_accounts.html",
        _context(request, title=f"Pick accounts: {connection.label}", connection=connection, rows=rows, error=error),
        status=status,
    )


@require_POST
@manager_required
def connect_disconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(Connection, pk=connection_id)
    try:
        services.connection_disconnect(connection=connection, actor=request.user)
    except services.ConnectError as exc:
        return _refuse(request, str(exc), back=reverse("admin:connections_connection_change", args=[connection.pk]))
    messages.success(request, f"{connection.label} disconnected: access revoked, its accounts' syncs stopped.")
    return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[connection.pk]))
