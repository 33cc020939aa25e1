"""Connections' writes and workflows: connect (browser or pasted credentials), pick accounts,
health (flag, re-exchange, check), reconnect and disconnect.

Health in one paragraph: when a platform refuses a connection's credentials (Google
``invalid_grant``, Meta error 190 — reported by the adapters through platforms/registry.py), or a
Meta user token is about to expire and cannot be exchanged again, the connection becomes
``needs_reconnect``, the scheduled syncs of its accounts pause (``needs_attention``), and a
critical alert opens. Reconnecting (the same flow again) stores the new credentials under a new
version, resumes the accounts and resolves the alert. Disconnecting revokes at the platform, stops
the accounts' syncs and keeps every synced row.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from campaigns.models import AdAccount, Platform
from connections.models import Connection
from optimization.models import Alert
from platforms import oauth, registry
from platforms.base import Account, AuthError, PlatformError

logger = logging.getLogger(__name__)

# Outside Alert.Kind's choices on purpose: the API-failure evaluation resolves every open alert
# of its own kinds that is not firing, and must not resolve these.
ALERT_KIND = Alert.Kind.CONNECTION
PAUSED_PREFIX = "Connection needs reconnecting"
SESSION_KEY = "connect_flows"
FLOW_MAX_AGE_SECONDS = 15 * 60
MAX_OPEN_FLOWS = 5


class ConnectError(Exception):
    """A connect, pick or disconnect step refused, with the message to show the operator."""


# --- The environment connection -------------------------------------------------------------------


def _environment_label(platform: str) -> str:
    if settings.ADS_SANDBOX:
        return "Sandbox (environment)"
    return "Environment: GOOGLE_ADS_* settings" if platform == Platform.GOOGLE else "Environment: META_* settings"


def connection_environment(platform: str) -> Connection:
    """The connection of the credentials in settings (created on first use; nothing stored)."""
    existing = Connection.objects.filter(platform=platform, kind=Connection.Kind.ENVIRONMENT).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Connection.objects.create(
                platform=platform, kind=Connection.Kind.ENVIRONMENT, label=_environment_label(platform)
            )
    except IntegrityError:  # created meanwhile by another process
        return Connection.objects.get(platform=platform, kind=Connection.Kind.ENVIRONMENT)


def environment_connections_ensure() -> list[Connection]:
    """At start: the environment's credentials of each platform become its connection."""
    configured = {
        Platform.GOOGLE: settings.ADS_SANDBOX or bool(settings.GOOGLE_ADS_REFRESH_TOKEN),
        Platform.META: settings.ADS_SANDBOX or bool(settings.META_ACCESS_TOKEN),
    }
    return [connection_environment(platform) for platform, present in configured.items() if present]


def account_attach_default_connection(sender: Any, instance: AdAccount, raw: bool = False, **kwargs: Any) -> None:
    """pre_save of AdAccount: an account without a connection belongs to the environment's."""
    if raw or instance.connection_id is not None:
        return
    instance.connection = connection_environment(instance.platform)


# --- The browser flows ----------------------------------------------------------------------------


def _endpoints(platform: str) -> registry.OAuthEndpoints:
    return registry.google_oauth_endpoints() if platform == Platform.GOOGLE else registry.meta_oauth_endpoints()


def connect_flow_start(*, session: Any, platform: str, redirect_uri: str, reconnect: Connection | None = None) -> str:
    """Remember a new flow (state + PKCE verifier) in the operator's session; the URL to send them to."""
    endpoints = _endpoints(platform)
    if not endpoints.client_id or not endpoints.client_secret:
        what = (
            "GOOGLE_OAUTH_CLIENT_ID / GOOGLE_OAUTH_CLIENT_SECRET"
            if platform == Platform.GOOGLE
            else "META_APP_ID / META_APP_SECRET"
        )
        raise ConnectError(f"No OAuth client is configured: set {what} (the app's own, from its console).")
    if reconnect is not None and (reconnect.platform != platform or reconnect.kind != Connection.Kind.OAUTH):
        raise ConnectError(
            "Only an OAuth login is reconnected through the sign-in page; paste new credentials instead."
        )
    state = secrets.token_urlsafe(32)
    verifier, challenge = oauth.new_pkce()
    flows = {
        key: flow
        for key, flow in (session.get(SESSION_KEY) or {}).items()
        if flow.get("started", 0) > timezone.now().timestamp() - FLOW_MAX_AGE_SECONDS
    }
    while len(flows) >= MAX_OPEN_FLOWS:  # a few tabs at once, not an unbounded session
        flows.pop(min(flows, key=lambda k: flows[k]["started"]))
    flows[state] = {
        "platform": platform,
        "verifier": verifier,
        "redirect_uri": redirect_uri,
        "reconnect": reconnect.pk if reconnect else None,
        "started": timezone.now().timestamp(),
    }
    session[SESSION_KEY] = flows
    build = oauth.google_authorization_url if platform == Platform.GOOGLE else oauth.meta_dialog_url
    return build(endpoints, redirect_uri=redirect_uri, state=state, code_challenge=challenge)


def _take_flow(session: Any, platform: str, state: str) -> dict[str, Any]:
    flows = dict(session.get(SESSION_KEY) or {})
    flow: dict[str, Any] | None = flows.pop(state, None) if state else None
    session[SESSION_KEY] = flows
    if flow is None or flow.get("platform") != platform:
        raise ConnectError(
            "This sign-in could not be verified (unknown or reused state): start again from the Connect button."
        )
    if flow["started"] < timezone.now().timestamp() - FLOW_MAX_AGE_SECONDS:
        raise ConnectError("This sign-in took too long (over 15 minutes): start again from the Connect button.")
    return flow


@sensitive_variables()
def connect_flow_finish(*, session: Any, platform: str, params: dict[str, str], actor: Any) -> Connection:
    """The callback: check state, exchange the code (with the PKCE verifier), validate, store."""
    flow = _take_flow(session, platform, params.get("state", ""))
    if params.get("error"):
        name = "Google" if platform == Platform.GOOGLE else "Meta"
        raise ConnectError(f"{name} did not grant access ({params['error'][:100]}); nothing was connected.")
    code = params.get("code", "")
    if not code:
        raise ConnectError("The platform sent no authorization code back; start again from the Connect button.")
    reconnect = Connection.objects.filter(pk=flow["reconnect"]).first() if flow.get("reconnect") else None
    endpoints = _endpoints(platform)
    try:
        if platform == Platform.GOOGLE:
            tokens = oauth.google_exchange_code(
                endpoints, code=code, redirect_uri=flow["redirect_uri"], code_verifier=flow["verifier"]
            )
            fields: dict[str, Any] = {"refresh_token": tokens.refresh_token, "scopes": tokens.scope.split()}
            label, reach = _google_validate(fields)
        else:
            now = timezone.now()
            short = oauth.meta_exchange_code(
                endpoints, code=code, redirect_uri=flow["redirect_uri"], code_verifier=flow["verifier"], now=now
            )
            long = oauth.meta_long_lived(endpoints, short.access_token, now=now)
            fields, label = _meta_validate(endpoints, long.access_token, expected_kind="USER")
            fields["expires_at"] = long.expires_at or fields.get("expires_at")
            reach = ""
    except PlatformError as exc:
        raise ConnectError(f"The platform refused the sign-in: {exc.message}") from None
    return _store(
        platform=platform,
        kind=Connection.Kind.OAUTH,
        label=label + reach,
        fields=fields,
        actor=actor,
        reconnect=reconnect,
    )


def _google_validate(fields: dict[str, Any]) -> tuple[str, str]:
    """List what the credentials reach before they are saved: a refusal is shown, not stored."""
    adapter = registry.build_adapter(
        registry.google_connection_config(
            refresh_token=fields.get("refresh_token", ""),
            service_account_info=fields.get("service_account_key", ""),
            login_customer_id=fields.get("login_customer_id", ""),
        )
    )
    try:
        accounts = adapter.list_accounts()
    finally:
        adapter.close()
    managers = sorted({a.manager_customer_id for a in accounts if a.manager_customer_id})
    label = "Google Ads login"
    reach = f" (via {', '.join(managers)})" if managers else f" ({len(accounts)} accounts)"
    return label, reach


def _meta_validate(endpoints: registry.OAuthEndpoints, token: str, *, expected_kind: str) -> tuple[dict[str, Any], str]:
    info = oauth.meta_debug_token(endpoints, token)
    if not info.is_valid:
        raise ConnectError(f"Meta says this token is not valid: {info.error or 'invalid'}; nothing was saved.")
    if info.app_id and endpoints.client_id and info.app_id != endpoints.client_id:
        raise ConnectError("This token belongs to another Meta app than META_APP_ID; nothing was saved.")
    missing = [scope for scope in ("ads_read", "ads_management") if scope not in info.scopes]
    if missing:
        raise ConnectError(f"The token lacks the {', '.join(missing)} permission; grant it and try again.")
    if expected_kind == "SYSTEM_USER" and info.kind not in ("SYSTEM_USER", "USER"):
        raise ConnectError(f"A {info.kind or 'token of unknown type'} cannot be a system user connection.")
    user_id, name = oauth.meta_user(endpoints, token)
    return (
        {
            "access_token": token,
            "external_user_id": user_id,
            "scopes": list(info.scopes),
            "expires_at": info.expires_at,
        },
        name or f"Meta user {user_id}",
    )


@sensitive_variables()
def connection_add_service_account(
    *, key_json: str, login_customer_id: str = "", actor: Any, reconnect: Connection | None = None
) -> Connection:
    """A pasted Google service account key: checked (shape, then a real JWT-bearer grant and an
    account listing) before it is saved."""
    try:
        info = json.loads(key_json)
    except ValueError:
        raise ConnectError("That is not JSON: paste the whole key file Google Cloud downloaded.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConnectError('That is not a service account key (its "type" must be "service_account").')
    missing = [k for k in ("client_email", "private_key", "private_key_id") if not info.get(k)]
    if missing:
        raise ConnectError(f"The key lacks {', '.join(missing)}: download a new JSON key for the service account.")
    login = login_customer_id.replace("-", "").strip()
    if login and not login.isdigit():
        raise ConnectError("The login customer id is ten digits (dashes allowed), e.g. 123-456-7890.")
    fields = {
        "service_account_key": json.dumps(info),
        "login_customer_id": login,
        "external_user_id": info["client_email"],
    }
    try:
        _label, reach = _google_validate(fields)
    except PlatformError as exc:
        raise ConnectError(f"Google refused the key: {exc.message}") from None
    except ValueError as exc:  # a private key that does not parse
        raise ConnectError(f"The private key in that file cannot be read ({type(exc).__name__}).") from None
    return _store(
        platform=Platform.GOOGLE,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        label=info["client_email"] + reach,
        fields=fields,
        actor=actor,
        reconnect=reconnect,
    )


@sensitive_variables()
def connection_add_system_user(
    *, token: str, business_id: str = "", actor: Any, reconnect: Connection | None = None
) -> Connection:
    """A pasted Meta system user token: inspected with /debug_token (app, scopes, expiry) and its
    user read before it is saved."""
    token = token.strip()
    business = business_id.strip()
    if not token:
        raise ConnectError("Paste the system user's access token.")
    if business and not business.isdigit():
        raise ConnectError("The business id is the number in Business Settings (digits only).")
    endpoints = registry.meta_oauth_endpoints()
    try:
        fields, label = _meta_validate(endpoints, token, expected_kind="SYSTEM_USER")
    except PlatformError as exc:
        raise ConnectError(f"Meta refused the token: {exc.message}") from None
    fields["business_id"] = business
    return _store(
        platform=Platform.META,
        kind=Connection.Kind.SYSTEM_USER,
        label=label,
        fields=fields,
        actor=actor,
        reconnect=reconnect,
    )


@sensitive_variables()
def _store(
    *, platform: str, kind: str, label: str, fields: dict[str, Any], actor: Any, reconnect: Connection | None
) -> Connection:
    """Save new credentials: on a reconnect into the same connection, under a new version (the
    registry then builds a fresh adapter), and resume what the old credentials had paused."""
    with transaction.atomic():
        if reconnect is not None:
            connection = Connection.objects.select_for_update().get(pk=reconnect.pk)
            if connection.kind != kind or connection.platform != platform:
                raise ConnectError("Reconnect with the same kind of credentials as the connection had.")
            connection.credential_version += 1
        else:
            connection = Connection(platform=platform, kind=kind, created_by=actor.get_username() if actor else "")
        connection.label = label[:255]
        for name, value in fields.items():
            setattr(connection, name, value if value is not None else ([] if name == "scopes" else None))
        connection.status = Connection.Status.ACTIVE
        connection.status_reason = ""
        connection.last_checked_at = timezone.now()
        connection.save()
        if reconnect is not None:
            _resume_accounts(connection)
    _resolve_alert(connection)
    logger.info(
        "connection stored",
        extra={"connection_id": connection.pk, "platform": platform, "kind": kind, "reconnect": reconnect is not None},
    )
    return connection


# --- Accounts ---------------------------------------------------------------------------------------


def connection_reachable_accounts(connection: Connection) -> list[Account]:
    """The ad accounts this connection's login reaches (manager accounts left out)."""
    if connection.status == Connection.Status.REVOKED:
        raise ConnectError("This connection was disconnected: connect again to list its accounts.")
    if connection.platform == Platform.GOOGLE or connection.kind == Connection.Kind.ENVIRONMENT:
        accounts = registry.platform_for(connection).list_accounts()
    else:
        accounts = oauth.meta_reachable_accounts(
            registry.meta_oauth_endpoints(), connection.access_token, business_id=connection.business_id
        )
    return [a for a in accounts if not a.is_manager]


def connection_pick_accounts(*, connection: Connection, external_ids: list[str], actor: Any) -> list[AdAccount]:
    """Add (or move here) the picked accounts; only accounts the login really reaches are taken.
    New accounts get their first backfill."""
    from campaigns import backfill

    if not external_ids:
        raise ConnectError("Pick at least one account.")
    try:
        reachable = {a.external_id: a for a in connection_reachable_accounts(connection)}
    except PlatformError as exc:
        raise ConnectError(f"The platform refused to list the accounts: {exc.message}") from None
    unknown = sorted(set(external_ids) - set(reachable))
    if unknown:
        raise ConnectError(f"This login does not reach {', '.join(unknown)}; pick from the list shown.")
    picked: list[AdAccount] = []
    with transaction.atomic():
        for external_id in dict.fromkeys(external_ids):
            found = reachable[external_id]
            account, created = AdAccount.objects.update_or_create(
                platform=connection.platform,
                external_id=external_id,
                defaults={
                    "name": found.name or external_id,
                    "currency_code": found.currency_code or "USD",
                    "time_zone": found.time_zone or "UTC",
                    "manager_customer_id": found.manager_customer_id,
                    "connection": connection,
                    "is_active": True,
                    "needs_attention": False,
                    "attention_reason": "",
                },
            )
            picked.append(account)
            if created:
                transaction.on_commit(partial(backfill.backfill_enqueue_due, account_ids=[account.pk]))
    logger.info(
        "accounts picked",
        extra={"connection_id": connection.pk, "accounts": [a.pk for a in picked], "actor": getattr(actor, "pk", None)},
    )
    return picked


def _resume_accounts(connection: Connection) -> int:
    """New credentials work (they were just checked): every account of the connection flagged for
    credentials resumes its scheduled syncs, whether paused here or by its own failed sync."""
    return AdAccount.objects.filter(connection=connection, needs_attention=True).update(
        needs_attention=False, attention_reason="", updated_at=timezone.now()
    )


# --- Health -------------------------------------------------------------------------------------------


def connection_credentials_refused(platform: str, connection_id: int | None, error: AuthError) -> None:
    """The registry's handler: an adapter call was refused for the credentials themselves."""
    connection = (
        connection_environment(platform)
        if connection_id is None
        else Connection.objects.filter(pk=connection_id).first()
    )
    if connection is None or connection.status != Connection.Status.ACTIVE:
        return
    if not registry.credentials_rejected(error):
        confirmed = _refusal_confirmed(connection)
        if confirmed is None:
            return  # the credentials still refresh: a passing refusal, not a revoked grant
        error = confirmed
    connection_flag(connection=connection, reason=f"{type(error).__name__}: {error}")


def _refusal_confirmed(connection: Connection) -> AuthError | None:
    """Try the credentials with a fresh adapter (a new token refresh): the refusal it gets, if
    the platform refuses the credentials themselves."""
    if connection.kind == Connection.Kind.ENVIRONMENT:
        config = registry.google_config() if connection.platform == Platform.GOOGLE else registry.meta_config()
    else:
        config = connection.adapter_config()
    adapter = registry.build_adapter(config)
    try:
        adapter.check_credentials()
    except AuthError as exc:
        return exc if registry.credentials_rejected(exc) else None
    except PlatformError:
        return None
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()
    return None


def connection_flag(*, connection: Connection, reason: str) -> bool:
    """Mark ``needs_reconnect``, pause its accounts' syncs and open an alert (once)."""
    now = timezone.now()
    flagged = Connection.objects.filter(pk=connection.pk, status=Connection.Status.ACTIVE).update(
        status=Connection.Status.NEEDS_RECONNECT, status_reason=reason[:2000], last_checked_at=now, updated_at=now
    )
    if not flagged:
        return False  # already flagged or disconnected
    connection.status, connection.status_reason = Connection.Status.NEEDS_RECONNECT, reason[:2000]
    AdAccount.objects.filter(connection=connection, is_active=True, needs_attention=False).update(
        needs_attention=True, attention_reason=f"{PAUSED_PREFIX}: {connection}", updated_at=now
    )
    how = (
        "fix the environment's credentials and restart"
        if connection.kind == Connection.Kind.ENVIRONMENT
        else "press Reconnect on the connection in admin"
    )
    message = f"{connection} needs reconnecting ({reason[:300]}); its accounts' syncs are paused: {how}."
    values = {
        "subject_label": str(connection)[:255],
        "severity": Alert.Severity.CRITICAL,
        "value": 1.0,
        "threshold": 1.0,
        "message": message,
        "details": {"connection_id": connection.pk, "platform": connection.platform},
        "last_seen_at": now,
    }
    try:
        with transaction.atomic():
            Alert.objects.create(kind=ALERT_KIND, subject=f"connection:{connection.pk}", opened_at=now, **values)
    except IntegrityError:
        Alert.objects.filter(kind=ALERT_KIND, subject=f"connection:{connection.pk}", resolved_at__isnull=True).update(
            **values
        )
    logger.warning(
        "connection needs reconnecting", extra={"connection_id": connection.pk, "platform": connection.platform}
    )
    return True


def _resolve_alert(connection: Connection) -> None:
    now = timezone.now()
    Alert.objects.filter(kind=ALERT_KIND, subject=f"connection:{connection.pk}", resolved_at__isnull=True).update(
        resolved_at=now, last_seen_at=now
    )


def _healthy(connection: Connection, now: datetime) -> None:
    updates: dict[str, Any] = {"last_checked_at": now}
    if connection.status == Connection.Status.NEEDS_RECONNECT:
        updates.update(status=Connection.Status.ACTIVE, status_reason="")
    Connection.objects.filter(pk=connection.pk).exclude(status=Connection.Status.REVOKED).update(**updates)
    if connection.status == Connection.Status.NEEDS_RECONNECT:
        connection.status = Connection.Status.ACTIVE
        _resume_accounts(connection)
        _resolve_alert(connection)


@dataclass
class HealthReport:
    checked: int = 0
    flagged: int = 0
    reexchanged: int = 0
    unreachable: int = 0


def connection_check(
    *, connection: Connection, now: datetime | None = None, report: HealthReport | None = None
) -> None:
    """Check one connection: a Meta user token near its expiry is exchanged again first; then the
    credentials are tried (a refusal flags the connection through the registry's handler)."""
    now = now or timezone.now()
    report = report or HealthReport()
    report.checked += 1
    if connection.status == Connection.Status.REVOKED:
        return
    if connection.platform == Platform.META and connection.kind == Connection.Kind.OAUTH and connection.expires_at:
        if connection.expires_at <= now:
            report.flagged += connection_flag(
                connection=connection, reason=f"The Meta token expired on {connection.expires_at:%Y-%m-%d}."
            )
            return
        if connection.expires_at - now <= timedelta(days=settings.META_TOKEN_REEXCHANGE_DAYS):
            try:
                fresh = oauth.meta_long_lived(registry.meta_oauth_endpoints(), connection.access_token, now=now)
            except AuthError as exc:
                report.flagged += connection_flag(
                    connection=connection,
                    reason=f"The Meta token expires on {connection.expires_at:%Y-%m-%d} and could not be renewed: {exc.message}",
                )
                return
            except PlatformError:
                report.unreachable += 1
                return
            with transaction.atomic():
                locked = Connection.objects.select_for_update().get(pk=connection.pk)
                locked.access_token = fresh.access_token
                locked.expires_at = fresh.expires_at
                locked.credential_version += 1
                locked.save(update_fields=["access_token", "expires_at", "credential_version", "updated_at"])
            connection.refresh_from_db()
            report.reexchanged += 1
            logger.info("meta token exchanged again", extra={"connection_id": connection.pk})
    try:
        registry.platform_for(connection).check_credentials()
    except AuthError as exc:
        connection.refresh_from_db(fields=["status"])
        if connection.status == Connection.Status.NEEDS_RECONNECT:
            report.flagged += 1  # flagged by the registry's handler on its way here
        else:
            Connection.objects.filter(pk=connection.pk).update(last_checked_at=now, status_reason=str(exc)[:2000])
        return
    except PlatformError:
        report.unreachable += 1
        return
    _healthy(connection, now)


def connections_check_all(*, now: datetime | None = None) -> HealthReport:
    report = HealthReport()
    for connection in Connection.objects.exclude(status=Connection.Status.REVOKED).order_by("pk"):
        connection_check(connection=connection, now=now, report=report)
    return report


# --- Disconnect -----------------------------------------------------------------------------------------


@sensitive_variables()
def _service_account_key_left(connection: Connection) -> str:
    """What the operator still has to do for a service account: the key stays valid in Google Cloud.

    Deleting it there needs IAM rights over the service account (iam.serviceAccountKeys.delete),
    which a key that only calls the Google Ads API should not have; so the platform forgets its
    copy and names the key to delete."""
    if connection.kind != Connection.Kind.SERVICE_ACCOUNT or not connection.service_account_key:
        return ""
    try:
        key = json.loads(connection.service_account_key)
    except ValueError:
        key = {}
    return (
        f" Its key is erased here but still valid in Google Cloud: delete key {key.get('private_key_id', '?')} of "
        f"{key.get('client_email', 'the service account')} (IAM & Admin → Service accounts → Keys)."
    )


def connection_disconnect(*, connection: Connection, actor: Any) -> Connection:
    """Revoke at the platform, forget the secrets, stop the accounts' syncs; history stays."""
    if connection.kind == Connection.Kind.ENVIRONMENT:
        raise ConnectError(
            "The environment connection comes from settings: remove its variables (or set ADS_SANDBOX=0) instead."
        )
    if connection.status == Connection.Status.REVOKED:
        return connection
    try:
        if connection.platform == Platform.GOOGLE and connection.refresh_token:
            oauth.google_revoke(registry.google_oauth_endpoints(), connection.refresh_token)
        elif connection.platform == Platform.META and connection.access_token:
            oauth.meta_revoke(registry.meta_oauth_endpoints(), connection.access_token)
    except AuthError:
        pass  # the platform no longer honours the token: it is as revoked as it gets
    except PlatformError as exc:
        raise ConnectError(
            f"The platform could not be reached to revoke access ({exc.message}); nothing changed, try again."
        ) from None
    now = timezone.now()
    with transaction.atomic():
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        locked.status = Connection.Status.REVOKED
        locked.status_reason = (
            f"Disconnected by {actor.get_username() if actor else 'the system'} on {now:%Y-%m-%d %H:%M} UTC."
            + _service_account_key_left(locked)
        )
        locked.refresh_token = locked.access_token = locked.service_account_key = ""
        locked.credential_version += 1
        locked.save()
        AdAccount.objects.filter(connection=locked).update(is_active=False, updated_at=now)
    registry.forget_connection(connection.pk)
    _resolve_alert(connection)
    logger.info("connection disconnected", extra={"connection_id": connection.pk})
    return locked
