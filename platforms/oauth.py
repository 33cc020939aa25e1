"""The platforms' OAuth and token endpoints, spoken over HTTPS (the sandbox's over loopback HTTP).

Google: the consent URL (scope ``adwords``, ``access_type=offline``, ``prompt=consent`` so a
refresh token comes back, PKCE S256), the authorization-code exchange and revocation. Meta: the
login dialog URL (``ads_read``, ``ads_management``, ``business_management``, PKCE), the code
exchange, ``fb_exchange_token`` for a ~60-day token, ``/debug_token``, the ad accounts a token
reaches (``me/adaccounts`` and each business's owned and client ad accounts) and
``DELETE /me/permissions``. Every Graph call carries ``appsecret_proof``.

None of these requests is in the SDKs' surface (the ad accounts are read here too, so that they
are listed the way the token sees them, before any connection exists). Errors are the adapters'
(``AuthError`` for a refusal, ``TransientError`` for an outage); their messages never hold a
token, a code or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from platforms.base import Account, AuthError, PlatformError, TransientError
from platforms.registry import GOOGLE_ADS_SCOPE, META_SCOPES, OAuthEndpoints

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 20.0
_ACCOUNT_FIELDS = "account_id,name,currency,timezone_name"


def new_pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _fail(platform: str, what: str, response: requests.Response | None, exc: Exception | None = None) -> PlatformError:
    if response is None:
        return TransientError(
            f"Could not reach the {platform} sign-in service ({what})", platform=platform, code="unreachable"
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500:
        return TransientError(f"{what}: HTTP {response.status_code}", platform=platform, code=str(response.status_code))
    error = body.get("error")
    if isinstance(error, dict):  # Graph's shape
        code = str(error.get("code") or response.status_code)
        if error.get("error_subcode"):
            code = f"{code}/{error['error_subcode']}"
        return AuthError(f"{what}: {error.get('message', 'refused')}", platform=platform, code=code)
    code = str(error or response.status_code)
    description = body.get("error_description") or ""
    return AuthError(f"{what}: {code}{': ' + description if description else ''}", platform=platform, code=code)


def _request(platform: str, what: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = requests.request(method, url, timeout=TIMEOUT_SECONDS, **kwargs)
    except requests.RequestException as exc:
        raise _fail(platform, what, None, exc) from None  # the URL may hold a token: not chained
    if response.status_code >= 400:
        raise _fail(platform, what, response)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise _fail(platform, what, response)
    return body if isinstance(body, dict) else {}


# --- Google ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoogleTokens:
    refresh_token: str
    access_token: str
    expires_in: int
    scope: str

    def __repr__(self) -> str:
        return f"GoogleTokens(scope={self.scope!r})"


def google_authorization_url(endpoints: OAuthEndpoints, *, redirect_uri: str, state: str, code_challenge: str) -> str:
    params = {
        "client_id": endpoints.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": GOOGLE_ADS_SCOPE,
        "access_type": "offline",  # a refresh token, to sync while nobody is signed in
        "prompt": "consent",  # Google sends the refresh token again only after a fresh consent
        "include_granted_scopes": "true",
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    return f"{endpoints.authorize_url}?{urlencode(params)}"


def google_exchange_code(
    endpoints: OAuthEndpoints, *, code: str, redirect_uri: str, code_verifier: str
) -> GoogleTokens:
    body = _request(
        "google",
        "Google refused the authorization code",
        "POST",
        endpoints.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": endpoints.client_id,
            "client_secret": endpoints.client_secret,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        },
    )
    if not body.get("refresh_token"):
        raise AuthError(
            "Google sent no refresh token: remove the app's access in the Google account's security settings "
            "and connect again (consent must be given afresh).",
            platform="google",
            code="NO_REFRESH_TOKEN",
        )
    scope = str(body.get("scope") or "")
    if GOOGLE_ADS_SCOPE not in scope.split():
        raise AuthError(
            "The Google Ads permission was not granted: connect again and leave its box ticked.",
            platform="google",
            code="SCOPE_NOT_GRANTED",
        )
    return GoogleTokens(
        refresh_token=str(body["refresh_token"]),
        access_token=str(body.get("access_token") or ""),
        expires_in=int(body.get("expires_in") or 0),
        scope=scope,
    )


def google_revoke(endpoints: OAuthEndpoints, token: str) -> None:
    """Revoke a refresh token (and every access token of its grant) at Google. A token Google
    no longer knows counts as revoked."""
    try:
        _request("google", "Google did not revoke the token", "POST", endpoints.revoke_url, data={"token": token})
    except AuthError as exc:
        if exc.code not in ("invalid_token", "400"):
            raise


# --- Meta -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaToken:
    access_token: str
    expires_at: datetime | None  # None: never (system users)

    def __repr__(self) -> str:
        return f"MetaToken(expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class MetaTokenInfo:
    is_valid: bool
    kind: str  # USER | SYSTEM_USER | PAGE | APP
    user_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    app_id: str
    error: str = ""


def _proof(endpoints: OAuthEndpoints, token: str) -> dict[str, str]:
    params = {"access_token": token}
    if endpoints.client_secret:
        params["appsecret_proof"] = hmac.new(
            endpoints.client_secret.encode(), token.encode(), hashlib.sha256
        ).hexdigest()
    return params


def _graph(endpoints: OAuthEndpoints, path: str) -> str:
    return f"{endpoints.graph_url}/{endpoints.api_version}/{path}"


def meta_dialog_url(endpoints: OAuthEndpoints, *, redirect_uri: str, state: str, code_challenge: str) -> str:
    params = {
        "client_id": endpoints.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "response_type": "code",
        "scope": ",".join(META_SCOPES),
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    return f"{endpoints.authorize_url}?{urlencode(params)}"


def _expiry(body: dict[str, Any], now: datetime) -> datetime | None:
    seconds = int(body.get("expires_in") or 0)
    return now + timedelta(seconds=seconds) if seconds else None


def meta_exchange_code(
    endpoints: OAuthEndpoints, *, code: str, redirect_uri: str, code_verifier: str, now: datetime
) -> MetaToken:
    body = _request(
        "meta",
        "Meta refused the login code",
        "GET",
        _graph(endpoints, "oauth/access_token"),
        params={
            "client_id": endpoints.client_id,
            "client_secret": endpoints.client_secret,
            "redirect_uri": redirect_uri,
            "code": code,
            "code_verifier": code_verifier,
        },
    )
    return MetaToken(str(body["access_token"]), _expiry(body, now))


def meta_long_lived(endpoints: OAuthEndpoints, token: str, *, now: datetime) -> MetaToken:
    """A user token exchanged for a long-lived one (~60 days), with its expiry."""
    body = _request(
        "meta",
        "Meta did not exchange the token",
        "GET",
        _graph(endpoints, "oauth/access_token"),
        params={
            "grant_type": "fb_exchange_token",
            "client_id": endpoints.client_id,
            "client_secret": endpoints.client_secret,
            "fb_exchange_token": token,
        },
    )
    return MetaToken(str(body["access_token"]), _expiry(body, now))


def meta_debug_token(endpoints: OAuthEndpoints, token: str) -> MetaTokenInfo:
    body = _request(
        "meta",
        "Meta did not inspect the token",
        "GET",
        _graph(endpoints, "debug_token"),
        params={"input_token": token, "access_token": f"{endpoints.client_id}|{endpoints.client_secret}"},
    )
    data = body.get("data") or {}
    expires = int(data.get("expires_at") or 0)
    error = data.get("error") or {}
    return MetaTokenInfo(
        is_valid=bool(data.get("is_valid")),
        kind=str(data.get("type") or ""),
        user_id=str(data.get("user_id") or ""),
        scopes=tuple(data.get("scopes") or ()),
        expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
        app_id=str(data.get("app_id") or ""),
        error=str(error.get("message") or "") if isinstance(error, dict) else "",
    )


def meta_user(endpoints: OAuthEndpoints, token: str) -> tuple[str, str]:
    body = _request(
        "meta",
        "Meta refused the token",
        "GET",
        _graph(endpoints, "me"),
        params={**_proof(endpoints, token), "fields": "id,name"},
    )
    return str(body.get("id") or ""), str(body.get("name") or "")


def _pages(endpoints: OAuthEndpoints, token: str, path: str, fields: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {**_proof(endpoints, token), "fields": fields, "limit": "200"}
    while True:
        body = _request("meta", f"Meta refused to list {path}", "GET", _graph(endpoints, path), params=params)
        items.extend(body.get("data") or [])
        paging = body.get("paging") or {}
        after = (paging.get("cursors") or {}).get("after")
        if not paging.get("next") or not after or not body.get("data"):
            return items
        params = {**params, "after": after}


def meta_reachable_accounts(endpoints: OAuthEndpoints, token: str, *, business_id: str = "") -> list[Account]:
    """Every ad account the token reaches: its own (``me/adaccounts``), and the owned and client
    ad accounts of each business it can see (or of ``business_id`` for a system user)."""
    found: dict[str, Account] = {}

    def add(item: dict[str, Any]) -> None:
        external_id = str(item.get("account_id") or str(item.get("id", "")).removeprefix("act_"))
        if external_id and external_id not in found:
            found[external_id] = Account(
                platform="meta",
                external_id=external_id,
                name=str(item.get("name") or ""),
                currency_code=str(item.get("currency") or "").upper(),
                time_zone=str(item.get("timezone_name") or "UTC"),
            )

    for item in _pages(endpoints, token, "me/adaccounts", _ACCOUNT_FIELDS):
        add(item)
    businesses = [business_id] if business_id else []
    if not businesses:
        try:
            businesses = [str(b["id"]) for b in _pages(endpoints, token, "me/businesses", "id,name")]
        except AuthError:
            businesses = []  # no business_management: the token's own accounts only
    for business in businesses:
        for edge in ("owned_ad_accounts", "client_ad_accounts"):
            for item in _pages(endpoints, token, f"{business}/{edge}", _ACCOUNT_FIELDS):
                add(item)
    return list(found.values())


def meta_revoke(endpoints: OAuthEndpoints, token: str) -> None:
    """The person removes the app (``DELETE /me/permissions``); a token already invalid is done."""
    try:
        _request(
            "meta",
            "Meta did not revoke the app's permissions",
            "DELETE",
            _graph(endpoints, "me/permissions"),
            params=_proof(endpoints, token),
        )
    except AuthError as exc:
        if not exc.code.startswith("190"):
            raise
