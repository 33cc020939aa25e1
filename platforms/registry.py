"""Build the configured adapter for a platform, from settings only.

With ``ADS_SANDBOX`` on (the default when no credentials are set) both adapters talk
to the local emulators in ``platforms/sandbox`` through the official SDKs, unpatched:
Google over gRPC with TLS (the sandbox's CA is trusted via
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) and Meta over HTTP (FacebookSession.GRAPH).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from platforms.base import AdPlatform
from platforms.observe import ObservedPlatform

SANDBOX_CA_FILENAME = "ca.pem"
# Credentials the sandbox accepts; anything else is refused like a bad token.
SANDBOX_GOOGLE_CLIENT_ID = "sandbox-client-id"
SANDBOX_GOOGLE_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_GOOGLE_REFRESH_TOKEN = "sandbox-refresh-token"
SANDBOX_GOOGLE_DEVELOPER_TOKEN = "sandbox-developer-token"
SANDBOX_GOOGLE_MANAGER_ID = "1000000001"
SANDBOX_META_ACCESS_TOKEN = "sandbox-meta-access-token"
SANDBOX_META_APP_ID = "100000000000001"
SANDBOX_META_APP_SECRET = "sandbox-meta-app-secret"
SANDBOX_META_BUSINESS_ID = "200000000000001"


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
            developer_token=SANDBOX_GOOGLE_DEVELOPER_TOKEN,
            client_id=SANDBOX_GOOGLE_CLIENT_ID,
            client_secret=SANDBOX_GOOGLE_CLIENT_SECRET,
            refresh_token=SANDBOX_GOOGLE_REFRESH_TOKEN,
            login_customer_id=SANDBOX_GOOGLE_MANAGER_ID,
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
            app_id=SANDBOX_META_APP_ID,
            app_secret=SANDBOX_META_APP_SECRET,
            access_token=SANDBOX_META_ACCESS_TOKEN,
            business_id=SANDBOX_META_BUSINESS_ID,
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


def trust_sandbox_ca() -> None:
    """gRPC reads extra roots once, when the process makes its first secure channel.

    Set, not defaulted: hosts often point this variable at the system bundle, which
    does not hold the sandbox's self-signed CA.
    """
    if settings.ADS_SANDBOX:
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(sandbox_ca_path())


@cache
def _build(platform: str) -> AdPlatform:
    if platform == "google":
        from platforms.google_ads import GoogleAdsPlatform

        trust_sandbox_ca()
        return ObservedPlatform(GoogleAdsPlatform(google_config()))
    if platform == "meta":
        from platforms.meta import MetaPlatform

        return ObservedPlatform(MetaPlatform(meta_config()))
    raise ValueError(f"Unknown ad platform {platform!r}; expected 'google' or 'meta'.")


def get_platform(platform: str) -> AdPlatform:
    """The adapter for ``platform`` ("google" | "meta"), built once per process."""
    return _build(platform)


def reset_platforms() -> None:
    """Forget built adapters (tests that change settings call this)."""
    _build.cache_clear()
