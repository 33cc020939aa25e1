"""Build adapters: the environment's (from settings) and one per stored connection.

``get_platform(platform)`` is the environment connection: the credentials in settings, built once
per process, as before connections existed. ``platform_for(connection)`` builds an adapter from
one stored connection (OAuth login, service account key, Meta token), cached per connection and
credential version, so a reconnect (new token, new version) gets a fresh adapter and the old one
is closed. ``platform_for_account(account)`` is what product code calls: the adapter of the
connection the account belongs to.

Adapters handed out here report credential failures (Google ``invalid_grant``, Meta error 190) to
the handlers registered with ``add_auth_failure_handler``: the connections app flags the
connection without platforms importing it.

With ``ADS_SANDBOX`` on (the default when no credentials are set) both adapters talk
to the local emulators in ``platforms/sandbox`` through the official SDKs, unpatched:
Google over gRPC with TLS (the sandbox's CA is trusted via
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) and Meta over HTTP (FacebookSession.GRAPH).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache, wraps
from pathlib import Path
from typing import Any

from django.conf import settings

from platforms.base import AdPlatform, AuthError
from platforms.observe import ObservedPlatform

logger = logging.getLogger(__name__)

SANDBOX_CA_FILENAME = "ca.pem"
GOOGLE_ADS_SCOPE = "https://www.googleapis.com/auth/adwords"
META_SCOPES = ("ads_read", "ads_management", "business_management")


@dataclass(frozen=True)
class GoogleAdsConfig:
    developer_token: str
    client_id: str
    client_secret: str
    refresh_token: str
    login_customer_id: str
    api_version: str
    endpoint: str
    token_uri: str
    use_proto_plus: bool
    # A service account's JSON key (the JWT-bearer grant) instead of client id + refresh token.
    service_account_info: str = ""

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        return f"GoogleAdsConfig(endpoint={self.endpoint!r}, api_version={self.api_version!r})"


@dataclass(frozen=True)
class MetaConfig:
    app_id: str
    app_secret: str
    access_token: str
    business_id: str
    api_version: str
    graph_url: str

    def __repr__(self) -> str:
        return f"MetaConfig(graph_url={self.graph_url!r}, api_version={self.api_version!r})"


def sandbox_ca_path() -> Path:
    return Path(settings.ADS_SANDBOX_DIR) / SANDBOX_CA_FILENAME


def google_config() -> GoogleAdsConfig:
    if settings.ADS_SANDBOX:
        host = settings.ADS_SANDBOX_HOST
        return GoogleAdsConfig(
            developer_token=settings.ADS_SANDBOX_GOOGLE_DEVELOPER_TOKEN,
            client_id=settings.ADS_SANDBOX_GOOGLE_CLIENT_ID,
            client_secret=settings.ADS_SANDBOX_GOOGLE_CLIENT_SECRET,
            refresh_token=settings.ADS_SANDBOX_GOOGLE_REFRESH_TOKEN,
            login_customer_id=settings.ADS_SANDBOX_GOOGLE_MANAGER_ID,
            api_version=settings.GOOGLE_ADS_API_VERSION,
            endpoint=f"{host}:{settings.ADS_SANDBOX_GOOGLE_PORT}",
            token_uri=f"http://{host}:{settings.ADS_SANDBOX_OAUTH_PORT}/token",
            use_proto_plus=settings.GOOGLE_ADS_USE_PROTO_PLUS,
        )
    return GoogleAdsConfig(
        developer_token=settings.GOOGLE_ADS_DEVELOPER_TOKEN,
        client_id=settings.GOOGLE_ADS_CLIENT_ID,
        client_secret=settings.GOOGLE_ADS_CLIENT_SECRET,
        refresh_token=settings.GOOGLE_ADS_REFRESH_TOKEN,
        login_customer_id=settings.GOOGLE_ADS_LOGIN_CUSTOMER_ID,
        api_version=settings.GOOGLE_ADS_API_VERSION,
        endpoint=settings.GOOGLE_ADS_ENDPOINT,
        token_uri=settings.GOOGLE_ADS_TOKEN_URI,
        use_proto_plus=settings.GOOGLE_ADS_USE_PROTO_PLUS,
    )


def meta_config() -> MetaConfig:
    if settings.ADS_SANDBOX:
        return MetaConfig(
            app_id=settings.ADS_SANDBOX_META_APP_ID,
            app_secret=settings.ADS_SANDBOX_META_APP_SECRET,
            access_token=settings.ADS_SANDBOX_META_ACCESS_TOKEN,
            business_id=settings.ADS_SANDBOX_META_BUSINESS_ID,
            api_version=settings.META_API_VERSION,
            graph_url=f"http://{settings.ADS_SANDBOX_HOST}:{settings.ADS_SANDBOX_META_PORT}",
        )
    return MetaConfig(
        app_id=settings.META_APP_ID,
        app_secret=settings.META_APP_SECRET,
        access_token=settings.META_ACCESS_TOKEN,
        business_id=settings.META_BUSINESS_ID,
        api_version=settings.META_API_VERSION,
        graph_url=settings.META_GRAPH_URL,
    )


@dataclass(frozen=True)
class OAuthEndpoints:
    """Where a platform's browser sign-in and token calls go, and the app/client we sign in as."""

    authorize_url: str
    token_url: str
    revoke_url: str
    client_id: str
    client_secret: str
    graph_url: str = ""  # Meta: the Graph API (token exchange, debug_token, ad accounts)
    api_version: str = ""

    def __repr__(self) -> str:
        return f"OAuthEndpoints(authorize_url={self.authorize_url!r})"


def google_oauth_endpoints() -> OAuthEndpoints:
    if settings.ADS_SANDBOX:
        base = f"http://{settings.ADS_SANDBOX_HOST}:{settings.ADS_SANDBOX_OAUTH_PORT}"
        return OAuthEndpoints(
            authorize_url=f"{base}/o/oauth2/v2/auth",
            token_url=f"{base}/token",
            revoke_url=f"{base}/revoke",
            client_id=settings.ADS_SANDBOX_GOOGLE_CLIENT_ID,
            client_secret=settings.ADS_SANDBOX_GOOGLE_CLIENT_SECRET,
        )
    return OAuthEndpoints(
        authorize_url=settings.GOOGLE_OAUTH_AUTHORIZE_URL,
        token_url=settings.GOOGLE_ADS_TOKEN_URI,
        revoke_url=settings.GOOGLE_OAUTH_REVOKE_URL,
        client_id=settings.GOOGLE_OAUTH_CLIENT_ID,
        client_secret=settings.GOOGLE_OAUTH_CLIENT_SECRET,
    )


def meta_oauth_endpoints() -> OAuthEndpoints:
    config = meta_config()
    version = config.api_version
    dialog_base = config.graph_url if settings.ADS_SANDBOX else settings.META_OAUTH_DIALOG_URL
    return OAuthEndpoints(
        authorize_url=f"{dialog_base.rstrip('/')}/{version}/dialog/oauth",
        token_url=f"{config.graph_url.rstrip('/')}/{version}/oauth/access_token",
        revoke_url=f"{config.graph_url.rstrip('/')}/{version}/me/permissions",
        client_id=config.app_id,
        client_secret=config.app_secret,
        graph_url=config.graph_url.rstrip("/"),
        api_version=version,
    )


def google_connection_config(
    *, refresh_token: str = "", service_account_info: str = "", login_customer_id: str = ""
) -> GoogleAdsConfig:
    """The environment's endpoint and client, with one connection's credentials."""
    base = google_config()
    oauth = google_oauth_endpoints()
    return replace(
        base,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        refresh_token=refresh_token,
        service_account_info=service_account_info,
        login_customer_id=login_customer_id,
        # Optional since 2026-09-09 (ignored by Google): sent only when one is configured.
        developer_token=base.developer_token,
    )


def meta_connection_config(*, access_token: str, business_id: str = "") -> MetaConfig:
    """The environment's app and Graph URL, with one connection's token (appsecret_proof is
    computed from the app secret by the SDK)."""
    return replace(meta_config(), access_token=access_token, business_id=business_id)


def trust_sandbox_ca() -> None:
    """gRPC reads extra roots once, when the process makes its first secure channel.

    Set, not defaulted: hosts often point this variable at the system bundle, which
    does not hold the sandbox's self-signed CA.
    """
    if settings.ADS_SANDBOX:
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(sandbox_ca_path())


# --- Credential failures: who hears about them -------------------------------------------------

# handler(platform, connection_id or None for the environment's, error)
AuthFailureHandler = Callable[[str, int | None, AuthError], None]
_auth_failure_handlers: list[AuthFailureHandler] = []


def add_auth_failure_handler(handler: AuthFailureHandler) -> None:
    if handler not in _auth_failure_handlers:
        _auth_failure_handlers.append(handler)


def remove_auth_failure_handler(handler: AuthFailureHandler) -> None:
    if handler in _auth_failure_handlers:
        _auth_failure_handlers.remove(handler)


def credentials_rejected(error: AuthError) -> bool:
    """Whether the platform refused the credentials themselves (reconnecting is the fix), as
    opposed to one account being out of reach: Google's ``invalid_grant`` on refresh, a
    revoked or unknown token, Meta's error 190 (invalid, expired or revoked token)."""
    code = (error.code or "").upper()
    if error.platform == "google":
        return (code == "OAUTH_REFRESH_FAILED" and "invalid_grant" in error.message) or code in {
            "OAUTH_TOKEN_REVOKED",
            "SERVICE_ACCOUNT_REFUSED",
        }
    if error.platform == "meta":
        return code == "190" or code.startswith("190/")
    return False


def credentials_suspect(error: AuthError) -> bool:
    """A Google access token refused mid-call: a revoked grant looks like this until the next
    refresh says ``invalid_grant``, so the handler confirms with a fresh refresh before flagging."""
    return error.platform == "google" and (error.code or "").upper() in {
        "OAUTH_TOKEN_INVALID",
        "OAUTH_TOKEN_EXPIRED",
        "OAUTH_TOKEN_REVOKED",
        "UNAUTHENTICATED",
    }


def _report(platform: str, connection_id: int | None, error: AuthError) -> None:
    if not (credentials_rejected(error) or credentials_suspect(error)):
        return
    for handler in list(_auth_failure_handlers):
        try:
            handler(platform, connection_id, error)
        except Exception:  # reporting must never hide the original error
            logger.exception("auth failure handler failed")


class _ReportingPlatform:
    """Wraps an adapter: an AuthError that means "these credentials are refused" is reported
    (with the connection it came from) before it reaches the caller; nothing else changes."""

    _STREAMING = frozenset({"list_campaigns", "iter_daily_metrics", "list_ad_groups", "iter_ad_group_metrics"})

    def __init__(self, adapter: Any, connection_id: int | None) -> None:
        self._adapter = adapter
        self._connection_id = connection_id
        self.platform = adapter.platform

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._adapter, name)
        if not callable(target) or name.startswith("_"):
            return target
        platform, connection_id = self.platform, self._connection_id
        if name in self._STREAMING:

            @wraps(target)
            def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
                try:
                    yield from target(*args, **kwargs)
                except AuthError as exc:
                    _report(platform, connection_id, exc)
                    raise

            return stream

        @wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return target(*args, **kwargs)
            except AuthError as exc:
                _report(platform, connection_id, exc)
                raise

        return call

    @property
    def wrapped(self) -> Any:
        return self._adapter

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._adapter!r})"


def build_adapter(config: GoogleAdsConfig | MetaConfig) -> Any:
    """A bare adapter for ``config`` (not cached, not reporting): validating credentials
    before they are saved, and what the cached builders wrap."""
    if isinstance(config, GoogleAdsConfig):
        from platforms.google_ads import GoogleAdsPlatform

        trust_sandbox_ca()
        return GoogleAdsPlatform(config)
    from platforms.meta import MetaPlatform

    return MetaPlatform(config)


@cache
def _build(platform: str) -> AdPlatform:
    if platform == "google":
        return _ReportingPlatform(ObservedPlatform(build_adapter(google_config())), None)
    if platform == "meta":
        return _ReportingPlatform(ObservedPlatform(build_adapter(meta_config())), None)
    raise ValueError(f"Unknown ad platform {platform!r}; expected 'google' or 'meta'.")


def get_platform(platform: str) -> AdPlatform:
    """The environment connection's adapter for ``platform`` ("google" | "meta"), built once per process."""
    return _build(platform)


# --- One adapter per stored connection -----------------------------------------------------------

_connection_lock = threading.Lock()
_connection_adapters: dict[int, tuple[int, AdPlatform]] = {}  # connection id -> (credential version, adapter)


def platform_for(connection: Any) -> AdPlatform:
    """The adapter of a stored connection (anything with ``pk``, ``platform``, ``kind``,
    ``credential_version`` and ``adapter_config()``); the environment's for kind "environment"."""
    if connection is None:
        raise ValueError("No connection given")
    if connection.kind == "environment":
        return get_platform(connection.platform)
    version = int(connection.credential_version)
    with _connection_lock:
        cached = _connection_adapters.get(connection.pk)
        if cached is not None and cached[0] == version:
            return cached[1]
    adapter = _ReportingPlatform(ObservedPlatform(build_adapter(connection.adapter_config())), connection.pk)
    with _connection_lock:
        cached = _connection_adapters.get(connection.pk)
        if cached is not None and cached[0] == version:
            _close_quietly(adapter)
            return cached[1]
        if cached is not None and cached[0] < version:
            _close_quietly(cached[1])  # the old credentials are gone: free their channels
        if cached is None or cached[0] < version:
            _connection_adapters[connection.pk] = (version, adapter)
    return adapter


def platform_for_account(account: Any) -> AdPlatform:
    """The adapter of the connection ``account`` belongs to (the environment's when none yet)."""
    connection = getattr(account, "connection", None)
    if connection is None:
        return get_platform(account.platform)
    return platform_for(connection)


def forget_connection(connection_id: int) -> None:
    """Drop (and close) the adapter built for a connection: it was disconnected."""
    with _connection_lock:
        cached = _connection_adapters.pop(connection_id, None)
    if cached is not None:
        _close_quietly(cached[1])


def _close_quietly(adapter: Any) -> None:
    inner = adapter
    while hasattr(inner, "wrapped"):
        inner = inner.wrapped
    close = getattr(inner, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing is best effort
            logger.debug("Closing an adapter failed", exc_info=True)


def reset_platforms() -> None:
    """Forget built adapters (tests that change settings call this)."""
    _build.cache_clear()
    with _connection_lock:
        cached = list(_connection_adapters.values())
        _connection_adapters.clear()
    for _version, adapter in cached:
        _close_quietly(adapter)
