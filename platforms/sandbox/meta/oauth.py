"""Meta's login side, offline: the OAuth dialog, token exchanges, token inspection, revocation,
and the ad accounts a person or a business reaches.

Served by the Graph emulator (server.py hands every request to ``route`` first):

- ``GET /<v>/dialog/oauth`` — the login dialog: pick one of the sandbox's people, Continue (or
  Cancel); it checks the app, a loopback ``redirect_uri``, the scopes and the PKCE challenge and
  redirects back with ``code`` and ``state``.
- ``GET /<v>/oauth/access_token`` — ``code`` (+ ``code_verifier``) for a short-lived user token;
  ``grant_type=fb_exchange_token`` for a long-lived one (~60 days).
- ``GET /<v>/debug_token?input_token=…`` — app, type (USER / SYSTEM_USER), scopes, expiry, validity.
- ``GET /<v>/me``, ``/me/adaccounts``, ``/me/businesses``, ``/<business>/owned_ad_accounts`` and
  ``/<business>/client_ad_accounts`` — what a token reaches; other nodes are checked against it
  and then served by server.py as before.
- ``DELETE /<v>/me/permissions`` — the person revokes the app: their tokens answer error 190.

Two logins reach different accounts: Ada Operator the demo business 200000000000001 (ad account
300000000000001), Bo Agency the agency business 200000000000002 (owned 300000000000002, and
300000000000003 of a client business shared with it). The agency's system user token reaches the
agency business and never expires. Those two ad accounts are added to the emulator's data on the
first request (with campaigns and metrics like every demo account). The environment's system user
token (server.py's ``access_token``) is checked exactly as before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from platforms.registry import META_SCOPES
from platforms.sandbox import credentials

SHORT_LIVED_SECONDS = 5_400  # a user token from the dialog: about 1.5 hours
LONG_LIVED_SECONDS = 5_184_000  # after fb_exchange_token: 60 days
CODE_LIFETIME_SECONDS = 600
DEMO_BUSINESS_ID = "200000000000001"
AGENCY_BUSINESS_ID = "200000000000002"
CLIENT_BUSINESS_ID = "200000000000003"
AGENCY_ACCOUNT_ID = "300000000000002"
CLIENT_ACCOUNT_ID = "300000000000003"
AGENCY_SYSTEM_USER_TOKEN = "sandbox-meta-agency-system-user-token"
AGENCY_SYSTEM_USER_ID = "100000000000098"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class SandboxPerson:
    user_id: str
    name: str
    businesses: tuple[str, ...]
    ad_accounts: tuple[str, ...]  # what me/adaccounts lists (personal and business accounts)


SANDBOX_PEOPLE = (
    SandboxPerson("10000000000001", "Ada Operator", (DEMO_BUSINESS_ID,), ("300000000000001",)),
    SandboxPerson("10000000000002", "Bo Agency", (AGENCY_BUSINESS_ID,), (AGENCY_ACCOUNT_ID, CLIENT_ACCOUNT_ID)),
)
# Ad accounts of other businesses a business has been given access to (client_ad_accounts).
CLIENT_ACCOUNTS = {AGENCY_BUSINESS_ID: (CLIENT_ACCOUNT_ID,)}


@dataclass
class _Token:
    user_id: str
    name: str
    kind: str  # USER | SYSTEM_USER
    scopes: tuple[str, ...]
    expires_at: float  # 0: never
    issued_at: float
    businesses: tuple[str, ...]
    ad_accounts: tuple[str, ...]


@dataclass
class _Code:
    person: SandboxPerson
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str
    expires_at: float


@dataclass
class MetaLogins:
    lock: threading.RLock = field(default_factory=threading.RLock)
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)  # user ids who removed the app

    def reset(self) -> None:
        with self.lock:
            self.codes.clear()
            self.revoked.clear()
            self.tokens = {t: info for t, info in self.tokens.items() if t == AGENCY_SYSTEM_USER_TOKEN}


_setup_lock = threading.Lock()


def logins_of(state: Any) -> MetaLogins:
    """The emulator's logins, created (with the agency's ad accounts) on the first request."""
    logins: MetaLogins | None = getattr(state, "oauth_logins", None)
    if logins is not None:
        return logins
    with _setup_lock, state.lock:
        logins = getattr(state, "oauth_logins", None)
        if logins is None:
            data = state.data
            if AGENCY_ACCOUNT_ID not in data.accounts:
                data.add_account(
                    AGENCY_ACCOUNT_ID,
                    "IBVI Agency - USD",
                    "USD",
                    "America/Los_Angeles",
                    campaigns=4,
                    business_id=AGENCY_BUSINESS_ID,
                )
            if CLIENT_ACCOUNT_ID not in data.accounts:
                data.add_account(
                    CLIENT_ACCOUNT_ID,
                    "Client Co - GBP",
                    "GBP",
                    "Europe/London",
                    campaigns=3,
                    business_id=CLIENT_BUSINESS_ID,
                )
            logins = MetaLogins()
            logins.tokens[AGENCY_SYSTEM_USER_TOKEN] = _Token(
                user_id=AGENCY_SYSTEM_USER_ID,
                name="IBVI Agency System User",
                kind="SYSTEM_USER",
                scopes=META_SCOPES,
                expires_at=0,
                issued_at=time.time(),
                businesses=(AGENCY_BUSINESS_ID,),
                ad_accounts=(AGENCY_ACCOUNT_ID, CLIENT_ACCOUNT_ID),
            )
            state.oauth_logins = logins
    return logins


def _pkce(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in _LOOPBACK_HOSTS


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


def _error(code: int, message: str, *, subcode: int | None = None, error_type: str = "OAuthException") -> Exception:
    from platforms.sandbox.meta.server import GraphError

    return GraphError(HTTPStatus.BAD_REQUEST, code, message, subcode=subcode, error_type=error_type)


def _token_of(params: dict[str, str], authorization: str) -> str:
    token = params.get("access_token", "")
    if not token and authorization.split(" ", 1)[0].lower() in ("bearer", "oauth"):
        token = authorization.split(" ", 1)[1].strip()
    return token


_DIALOG_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in with Facebook (sandbox)</title>
<style>body{{font-family:sans-serif;max-width:36rem;margin:3rem auto}}label{{display:block;margin:.5rem 0}}
button{{margin-right:1rem;padding:.5rem 1.5rem}}</style></head>
<body>
<h1>Log in with Facebook</h1>
<p><strong>IBVI Ads Platform</strong> (app {app_id}) is requesting: {scopes}.</p>
<form method="post" action="{action}">
{hidden}
{choices}
<button type="submit" name="decision" value="deny">Cancel</button>
<button type="submit" name="decision" value="allow" id="allow">Continue</button>
</form>
</body></html>
"""
_DIALOG_FIELDS = ("client_id", "redirect_uri", "state", "scope", "code_challenge", "code_challenge_method")


def route(handler: Any, state: Any, method: str, parts: list[str], params: dict[str, str]) -> tuple[int, Any]:
    """Answer the login side here; check a login's token against what it reaches; hand the rest
    (and the environment's token) to the emulator's own routes."""
    logins = logins_of(state)
    path = "/".join(parts)
    if parts[:2] == ["dialog", "oauth"]:
        _dialog(handler, logins, method, parts, params)
        return HTTPStatus.OK, None  # answered directly (a page or a redirect)
    if path == "oauth/access_token" and method == "GET":
        return HTTPStatus.OK, _access_token(state, logins, params)
    authorization = handler.headers.get("Authorization", "")
    token = _token_of(params, authorization)
    if path == "debug_token" and method == "GET":
        return HTTPStatus.OK, _debug_token(state, logins, token, params.get("input_token", ""))
    with logins.lock:
        info = logins.tokens.get(token)
    if info is None:
        state.check_token(params, authorization)  # the environment's token, as before
        return cast(tuple[int, Any], handler._route(state, method, parts, params))
    _check_login_token(state, logins, token, info, params)
    node = parts[0] if parts else ""
    edge = parts[1] if len(parts) > 1 else ""
    if node == "me":
        if not edge and method == "GET":
            from platforms.sandbox.meta.server import _select

            return HTTPStatus.OK, _select({"id": info.user_id, "name": info.name}, params, ("id", "name"))
        if edge == "permissions" and method == "DELETE":
            with logins.lock:
                logins.revoked.add(info.user_id)
            return HTTPStatus.OK, {"success": True}
        if edge == "adaccounts" and method == "GET":
            return HTTPStatus.OK, _accounts_page(handler, state, info.ad_accounts, params)
        if edge == "businesses" and method == "GET":
            items = [{"id": b, "name": f"Business {b}"} for b in info.businesses]
            return HTTPStatus.OK, handler._list_page(items, params)
    if node in info.businesses and edge in ("owned_ad_accounts", "client_ad_accounts") and method == "GET":
        with state.lock:
            if edge == "owned_ad_accounts":
                ids = [a.account_id for a in state.data.accounts.values() if a.business_id == node]
            else:
                ids = list(CLIENT_ACCOUNTS.get(node, ()))
        return HTTPStatus.OK, _accounts_page(handler, state, tuple(ids), params)
    with state.lock:
        account = state.account_of(node)
    if node == "me" or (node == state.data.business_id and node not in info.businesses):
        raise _not_found(node, method)
    if account is not None and account.account_id not in info.ad_accounts:
        raise _not_found(node, method)
    return cast(tuple[int, Any], handler._route(state, method, parts, params))


def _not_found(node: str, method: str) -> Exception:
    from platforms.sandbox.meta.server import _not_found as not_found

    return not_found(node, method.lower())


def _accounts_page(handler: Any, state: Any, account_ids: tuple[str, ...], params: dict[str, str]) -> dict[str, Any]:
    from platforms.sandbox.meta.server import _account_node

    with state.lock:
        nodes = [_account_node(state.data.accounts[a]) for a in account_ids if a in state.data.accounts]
    return cast(dict[str, Any], handler._list_page(nodes, params))


def _check_login_token(state: Any, logins: MetaLogins, token: str, info: _Token, params: dict[str, str]) -> None:
    with logins.lock:
        revoked = info.user_id in logins.revoked
    if revoked:
        raise _error(190, "Error validating access token: The user has not authorized application.", subcode=458)
    if info.expires_at and info.expires_at < state.clock():
        raise _error(190, "Error validating access token: Session has expired.", subcode=463)
    proof = params.get("appsecret_proof")
    if proof is not None:
        expected = hmac.new(credentials.META_APP_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof, expected):
            raise _error(100, "Invalid appsecret_proof provided in the API argument", error_type="GraphMethodException")


def _check_app(params: dict[str, str]) -> None:
    if not hmac.compare_digest(params.get("client_id", ""), credentials.META_APP_ID):
        raise _error(101, "Error validating application. Invalid application ID.")
    if not hmac.compare_digest(params.get("client_secret", ""), credentials.META_APP_SECRET):
        raise _error(1, "Error validating client secret.")


def _issue(state: Any, logins: MetaLogins, *, person_id: str, name: str, scopes: tuple[str, ...], lifetime: int,
           businesses: tuple[str, ...], ad_accounts: tuple[str, ...]) -> tuple[str, int]:  # fmt: skip
    token = "EAAsandbox" + secrets.token_urlsafe(32)
    now = state.clock()
    with logins.lock:
        logins.tokens[token] = _Token(person_id, name, "USER", scopes, now + lifetime, now, businesses, ad_accounts)
    return token, lifetime


def _access_token(state: Any, logins: MetaLogins, params: dict[str, str]) -> dict[str, Any]:
    _check_app(params)
    if params.get("grant_type") == "fb_exchange_token":
        old = params.get("fb_exchange_token", "")
        with logins.lock:
            info = logins.tokens.get(old)
            revoked = info is not None and info.user_id in logins.revoked
        if info is None or info.kind != "USER" or revoked or (info.expires_at and info.expires_at < state.clock()):
            raise _error(
                190, "Error validating access token: the token to exchange is invalid or expired.", subcode=463
            )
        token, lifetime = _issue(
            state,
            logins,
            person_id=info.user_id,
            name=info.name,
            scopes=info.scopes,
            lifetime=LONG_LIVED_SECONDS,
            businesses=info.businesses,
            ad_accounts=info.ad_accounts,
        )
        return {"access_token": token, "token_type": "bearer", "expires_in": lifetime}
    with logins.lock:
        grant = logins.codes.pop(params.get("code", ""), None)  # one use
    if grant is None or grant.expires_at < time.monotonic():
        raise _error(100, "This authorization code has been used or has expired.", subcode=36009)
    if grant.redirect_uri != params.get("redirect_uri", ""):
        raise _error(100, "Error validating verification code. Please make sure your redirect_uri is identical.")
    if grant.code_challenge and not hmac.compare_digest(_pkce(params.get("code_verifier", "")), grant.code_challenge):
        raise _error(100, "Invalid code verifier.", subcode=36008)
    person = grant.person
    token, lifetime = _issue(
        state,
        logins,
        person_id=person.user_id,
        name=person.name,
        scopes=grant.scopes,
        lifetime=SHORT_LIVED_SECONDS,
        businesses=person.businesses,
        ad_accounts=person.ad_accounts,
    )
    with logins.lock:
        logins.revoked.discard(person.user_id)  # logging in again grants the app again
    return {"access_token": token, "token_type": "bearer", "expires_in": lifetime}


def _debug_token(state: Any, logins: MetaLogins, token: str, input_token: str) -> dict[str, Any]:
    app_token = f"{credentials.META_APP_ID}|{credentials.META_APP_SECRET}"
    with logins.lock:
        caller_known = token in logins.tokens
    if not (hmac.compare_digest(token, app_token) or caller_known or hmac.compare_digest(token, state.access_token)):
        raise _error(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)
    base = {"app_id": credentials.META_APP_ID, "application": "IBVI Ads Platform (sandbox)"}
    if hmac.compare_digest(input_token, state.access_token):
        return {
            "data": {
                **base,
                "type": "SYSTEM_USER",
                "is_valid": True,
                "expires_at": 0,
                "data_access_expires_at": 0,
                "scopes": list(META_SCOPES),
                "user_id": "100000000000099",
            }
        }
    with logins.lock:
        info = logins.tokens.get(input_token)
        revoked = info is not None and info.user_id in logins.revoked
    if info is None or revoked or (info.expires_at and info.expires_at < state.clock()):
        reason = "The user has not authorized application." if revoked else "Invalid or expired token."
        return {"data": {**base, "is_valid": False, "scopes": [], "error": {"code": 190, "message": reason}}}
    return {
        "data": {
            **base,
            "type": info.kind,
            "is_valid": True,
            "issued_at": int(info.issued_at),
            "expires_at": int(info.expires_at),
            "data_access_expires_at": int(info.issued_at + 90 * 86400),
            "scopes": list(info.scopes),
            "user_id": info.user_id,
        }
    }


def _dialog(handler: Any, logins: MetaLogins, method: str, parts: list[str], params: dict[str, str]) -> None:
    problem = ""
    if not hmac.compare_digest(params.get("client_id", ""), credentials.META_APP_ID):
        problem = "Invalid App ID: the app is not known to this sandbox."
    elif not _loopback(params.get("redirect_uri", "")):
        problem = "URL blocked: the sandbox accepts loopback redirect URIs only."
    elif params.get("code_challenge") and params.get("code_challenge_method", "S256") != "S256":
        problem = "code_challenge_method must be S256."
    scopes = tuple(s for s in params.get("scope", "").replace(" ", ",").split(",") if s)
    unknown = [s for s in scopes if s not in META_SCOPES]
    if not problem and unknown:
        problem = f"Invalid Scopes: {', '.join(unknown)}."
    if problem:
        _page(handler, HTTPStatus.BAD_REQUEST, f"<h1>{html.escape(problem)}</h1>")
        return
    if method == "GET" and len(parts) == 2:
        hidden = "\n".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">'
            for name in _DIALOG_FIELDS
        )
        choices = "\n".join(
            f'<label><input type="radio" name="person" value="{p.user_id}"{" checked" if i == 0 else ""}> '
            f"Continue as {html.escape(p.name)}</label>"
            for i, p in enumerate(SANDBOX_PEOPLE)
        )
        action = "/" + "/".join([handler.path.split("/")[1], "dialog", "oauth", "confirm"])
        _page(
            handler,
            HTTPStatus.OK,
            _DIALOG_PAGE.format(
                app_id=credentials.META_APP_ID,
                scopes=html.escape(", ".join(scopes) or "public_profile"),
                action=html.escape(action),
                hidden=hidden,
                choices=choices,
            ),
        )
        return
    if method != "POST" or parts[2:] != ["confirm"]:
        _page(handler, HTTPStatus.NOT_FOUND, "<h1>Not found</h1>")
        return
    redirect_uri = params["redirect_uri"]
    back = {"state": params["state"]} if params.get("state") else {}
    if params.get("decision") != "allow":
        _redirect(
            handler,
            _with_query(
                redirect_uri,
                {
                    **back,
                    "error": "access_denied",
                    "error_reason": "user_denied",
                    "error_description": "Permissions error",
                },
            ),
        )
        return
    person = next((p for p in SANDBOX_PEOPLE if p.user_id == params.get("person")), None)
    if person is None:
        _page(handler, HTTPStatus.BAD_REQUEST, "<h1>Choose who to continue as.</h1>")
        return
    code = "AQsandbox" + secrets.token_urlsafe(24)
    with logins.lock:
        logins.codes[code] = _Code(
            person, redirect_uri, scopes, params.get("code_challenge", ""), time.monotonic() + CODE_LIFETIME_SECONDS
        )
    _redirect(handler, _with_query(redirect_uri, {**back, "code": code}))


def _page(handler: Any, status: int, markup: str) -> None:
    payload = markup.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(payload)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(payload)


def _redirect(handler: Any, location: str) -> None:
    handler.send_response(HTTPStatus.FOUND)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
