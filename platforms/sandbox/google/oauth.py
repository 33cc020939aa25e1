"""Google's OAuth 2.0 side, offline: the consent page, the token endpoint, revocation.

Served over plain HTTP on localhost (the token URI and the authorization URL are configurable in
the clients, unlike the gRPC endpoint's TLS), answering like accounts.google.com and
oauth2.googleapis.com:

- ``GET /o/oauth2/v2/auth`` — the consent page: pick one of the sandbox's Google logins, then
  Allow (or Cancel). It checks the client, a loopback ``redirect_uri``, ``response_type=code``,
  the Google Ads scope and the PKCE challenge (S256), and redirects back with ``code`` and
  ``state`` (``error=access_denied`` on Cancel). ``access_type=offline`` gets a refresh token.
- ``POST /token`` — ``authorization_code`` (one use, same redirect URI, PKCE verifier checked),
  ``refresh_token`` (``invalid_grant`` once revoked), and the JWT-bearer grant
  (``urn:ietf:params:oauth:grant-type:jwt-bearer``) of the sandbox's service account, whose key is
  written once to ``<key dir>/google-service-account.json`` for an operator to paste.
- ``POST /revoke`` — revokes a refresh or access token (and everything minted from the grant).

Each login reaches its own manager account: ``ops@ibvi.example`` the demo manager 1000000001 (the
environment's refresh token is this login's), ``agency@ibvi.example`` the agency manager
1000000002; the service account has been given access to the agency manager. The gRPC emulator
asks ``login_reaches`` which customers the caller's access token may see. Tokens issued any other
way (a test calling ``state.issue_token`` itself) reach every customer, as before logins existed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

ACCESS_TOKEN_LIFETIME_SECONDS = 3599
AUTHORIZATION_CODE_LIFETIME_SECONDS = 600
ADWORDS_SCOPE = "https://www.googleapis.com/auth/adwords"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SERVICE_ACCOUNT_FILENAME = "google-service-account.json"
SERVICE_ACCOUNT_EMAIL = "ads-sync@ibvi-sandbox.iam.gserviceaccount.com"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class SandboxLogin:
    """A Google account of the sandbox and the manager accounts it has been given access to."""

    email: str
    name: str
    managers: frozenset[int]


DEMO_MANAGER_ID = 1000000001
AGENCY_MANAGER_ID = 1000000002
SANDBOX_LOGINS = (
    SandboxLogin("ops@ibvi.example", "IBVI Operations", frozenset({DEMO_MANAGER_ID})),
    SandboxLogin("agency@ibvi.example", "IBVI Agency", frozenset({AGENCY_MANAGER_ID})),
)
ENVIRONMENT_LOGIN = SANDBOX_LOGINS[0].email
SERVICE_ACCOUNT_MANAGERS = frozenset({AGENCY_MANAGER_ID})


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def pkce_challenge(verifier: str) -> str:
    """S256: base64url(sha256(verifier)) without padding (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@dataclass
class _Grant:
    login: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    offline: bool
    expires_at: float


@dataclass
class SandboxLogins:
    """Who each token belongs to: codes, refresh tokens and access tokens of the logins."""

    environment_refresh_token: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    codes: dict[str, _Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> login email
    revoked: set[str] = field(default_factory=set)
    access_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # access -> (login, refresh)

    def __post_init__(self) -> None:
        self.refresh_tokens[self.environment_refresh_token] = ENVIRONMENT_LOGIN

    def managers_of(self, login: str) -> frozenset[int]:
        if login == SERVICE_ACCOUNT_EMAIL:
            return SERVICE_ACCOUNT_MANAGERS
        for known in SANDBOX_LOGINS:
            if known.email == login:
                return known.managers
        return frozenset()

    def login_of_access_token(self, token: str) -> str | None:
        with self.lock:
            owner = self.access_tokens.get(token)
        return owner[0] if owner else None

    def reset(self) -> None:
        """Tests: forget every grant made through the flows (the environment's token stays)."""
        with self.lock:
            self.codes.clear()
            self.revoked.clear()
            self.access_tokens.clear()
            self.refresh_tokens = {self.environment_refresh_token: ENVIRONMENT_LOGIN}


def login_reaches(state: Any, metadata: Mapping[str, str], customer: Any) -> bool:
    """Whether the access token of a gRPC call reaches ``customer``: a manager its login was given
    access to, or a client under one. Tokens no login owns reach everything (see the docstring)."""
    logins: SandboxLogins | None = getattr(state, "oauth_logins", None)
    if logins is None:
        return True
    token = metadata.get("authorization", "").partition(" ")[2].strip()
    login = logins.login_of_access_token(token)
    if login is None:
        return True
    managers = logins.managers_of(login)
    return customer.id in managers or (customer.manager_id is not None and customer.manager_id in managers)


# --- The service account's key -------------------------------------------------------------------


def ensure_service_account_key(key_dir: Path) -> dict[str, str]:
    """The sandbox service account's JSON key, generated once per directory (like the TLS files),
    in the format Google Cloud downloads."""
    path = Path(key_dir) / SERVICE_ACCOUNT_FILENAME
    if path.exists():
        return cast(dict[str, str], json.loads(path.read_text()))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "ibvi-sandbox",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    Path(key_dir).mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(info, indent=2))
    partial.chmod(0o600)
    partial.replace(path)  # atomic: two sandboxes starting at once agree on one key
    return cast(dict[str, str], json.loads(path.read_text()))


def _public_pem(info: dict[str, str]) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- The consent page ----------------------------------------------------------------------------

_CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Google Accounts (sandbox)</title>
<style>body{{font-family:sans-serif;max-width:36rem;margin:3rem auto}}label{{display:block;margin:.5rem 0}}
button{{margin-right:1rem;padding:.5rem 1.5rem}}</style></head>
<body>
<h1>Choose an account</h1>
<p>to continue to <strong>IBVI Ads Platform</strong> ({client_id})</p>
<form method="post" action="/o/oauth2/v2/auth/approve">
{hidden}
{choices}
<p>IBVI Ads Platform wants to access your Google Account:</p>
<ul><li>See, edit, create and delete your Google Ads accounts and data ({scope}).</li></ul>
<button type="submit" name="decision" value="deny">Cancel</button>
<button type="submit" name="decision" value="allow" id="allow">Allow</button>
</form>
</body></html>
"""
_FLOW_FIELDS = (
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "access_type",
)


def _loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in _LOOPBACK_HOSTS


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


# The click conversions the emulator stored, as JSON: `curl http://127.0.0.1:<oauth port>/_sandbox/conversions`.
INSPECT_CONVERSIONS_PATH = "/_sandbox/conversions"


class OAuthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        issue_token: Callable[[int], str],
        state: Any = None,
        key_dir: Path | None = None,
    ) -> None:
        logins = SandboxLogins(environment_refresh_token=refresh_token)
        if state is not None:
            state.oauth_logins = logins  # read by the gRPC emulator through login_reaches
        self.logins = logins
        self.service_account_info = ensure_service_account_key(key_dir) if key_dir is not None else None
        service_account_pem = _public_pem(self.service_account_info) if self.service_account_info else ""
        service_account_kid = (self.service_account_info or {}).get("private_key_id", "")

        def drop_access_tokens(refresh: str) -> None:
            """Every access token minted from a revoked grant stops working at once."""
            with logins.lock:
                minted = [a for a, (_, r) in logins.access_tokens.items() if r == refresh]
            if state is not None:
                with state.lock:
                    for access in minted:
                        state._tokens.pop(access, None)

        def mint(login: str, refresh: str) -> str:
            access = issue_token(ACCESS_TOKEN_LIFETIME_SECONDS)
            with logins.lock:
                logins.access_tokens[access] = (login, refresh)
            return access

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            # --- Browser side ------------------------------------------------------------------

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == INSPECT_CONVERSIONS_PATH and state is not None:
                    # What the emulator stored, for whoever runs it (read-only, loopback).
                    stored = [asdict(c) for c in state.conversions]
                    self._answer(HTTPStatus.OK, {"conversions": stored})
                    return
                if parts.path != "/o/oauth2/v2/auth":
                    self._answer(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                    return
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                problem = self._check_authorization_request(query)
                if problem:
                    self._page(HTTPStatus.BAD_REQUEST, f"<h1>Error 400: {html.escape(problem)}</h1>")
                    return
                hidden = "\n".join(
                    f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
                    for name in _FLOW_FIELDS
                )
                choices = "\n".join(
                    f'<label><input type="radio" name="login" value="{html.escape(login.email)}"'
                    f"{' checked' if index == 0 else ''}> {html.escape(login.name)} "
                    f"&lt;{html.escape(login.email)}&gt;</label>"
                    for index, login in enumerate(SANDBOX_LOGINS)
                )
                self._page(
                    HTTPStatus.OK,
                    _CONSENT_PAGE.format(
                        client_id=html.escape(query["client_id"]),
                        hidden=hidden,
                        choices=choices,
                        scope=html.escape(ADWORDS_SCOPE),
                    ),
                )

            def _check_authorization_request(self, query: dict[str, str]) -> str:
                if not _same(query.get("client_id", ""), client_id):
                    return "invalid_client (the OAuth client was not found)"
                if not _loopback(query.get("redirect_uri", "")):
                    return "redirect_uri_mismatch (the sandbox accepts loopback redirect URIs only)"
                if query.get("response_type") != "code":
                    return "unsupported_response_type (response_type must be code)"
                if ADWORDS_SCOPE not in query.get("scope", "").split():
                    return f"invalid_scope (ask for {ADWORDS_SCOPE})"
                if query.get("code_challenge") and query.get("code_challenge_method", "plain") != "S256":
                    return "invalid_request (code_challenge_method must be S256)"
                return ""

            def _approve(self, form: dict[str, str]) -> None:
                problem = self._check_authorization_request({**form, "response_type": "code"})
                if problem:
                    self._page(HTTPStatus.BAD_REQUEST, f"<h1>Error 400: {html.escape(problem)}</h1>")
                    return
                redirect_uri, flow_state = form["redirect_uri"], form.get("state", "")
                back = {"state": flow_state} if flow_state else {}
                if form.get("decision") != "allow":
                    self._redirect(_with_query(redirect_uri, {**back, "error": "access_denied"}))
                    return
                login = form.get("login", "")
                if not logins.managers_of(login):
                    self._page(HTTPStatus.BAD_REQUEST, "<h1>Error 400: choose an account</h1>")
                    return
                code = "4/sandbox-" + secrets.token_urlsafe(24)
                with logins.lock:
                    logins.codes[code] = _Grant(
                        login=login,
                        client_id=form["client_id"],
                        redirect_uri=redirect_uri,
                        scope=form.get("scope", ""),
                        code_challenge=form.get("code_challenge", ""),
                        code_challenge_method=form.get("code_challenge_method", ""),
                        offline=form.get("access_type") == "offline",
                        expires_at=time.monotonic() + AUTHORIZATION_CODE_LIFETIME_SECONDS,
                    )
                self._redirect(_with_query(redirect_uri, {**back, "code": code, "scope": form.get("scope", "")}))

            # --- Token endpoint ----------------------------------------------------------------

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if path == "/o/oauth2/v2/auth/approve":
                    self._approve(form)
                elif path == "/token":
                    self._token(form)
                elif path == "/revoke":
                    query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    self._revoke(form.get("token") or query.get("token", ""))
                else:
                    self._answer(HTTPStatus.NOT_FOUND, {"error": "not_found"})

            def _token(self, form: dict[str, str]) -> None:
                grant_type = form.get("grant_type", "")
                if grant_type == JWT_BEARER_GRANT:
                    self._jwt_bearer(form.get("assertion", ""))
                    return
                if grant_type not in ("refresh_token", "authorization_code"):
                    self._answer(HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"})
                    return
                if not (
                    _same(form.get("client_id", ""), client_id) and _same(form.get("client_secret", ""), client_secret)
                ):
                    self._answer(
                        HTTPStatus.UNAUTHORIZED,
                        {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                    )
                    return
                if grant_type == "authorization_code":
                    self._exchange_code(form)
                    return
                refresh = form.get("refresh_token", "")
                with logins.lock:
                    login = logins.refresh_tokens.get(refresh) if refresh not in logins.revoked else None
                if login is None:
                    self._invalid_grant("Token has been expired or revoked.")
                    return
                self._answer(HTTPStatus.OK, self._token_body(mint(login, refresh)))

            def _exchange_code(self, form: dict[str, str]) -> None:
                with logins.lock:
                    grant = logins.codes.pop(form.get("code", ""), None)  # one use, even when refused
                if grant is None or grant.expires_at < time.monotonic():
                    self._invalid_grant("Malformed auth code.")
                    return
                if grant.redirect_uri != form.get("redirect_uri", ""):
                    self._answer(
                        HTTPStatus.BAD_REQUEST, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
                    )
                    return
                if grant.code_challenge:
                    verifier = form.get("code_verifier", "")
                    if not verifier:
                        self._invalid_grant("Missing code verifier.")
                        return
                    if not _same(pkce_challenge(verifier), grant.code_challenge):
                        self._invalid_grant("Invalid code verifier.")
                        return
                refresh = ""
                if grant.offline:
                    refresh = "1//sandbox-" + secrets.token_urlsafe(32)
                    with logins.lock:
                        logins.refresh_tokens[refresh] = grant.login
                body = self._token_body(mint(grant.login, refresh))
                if refresh:
                    body["refresh_token"] = refresh
                body["scope"] = grant.scope
                self._answer(HTTPStatus.OK, body)

            def _jwt_bearer(self, assertion: str) -> None:
                from google.auth import jwt

                if not service_account_pem:
                    self._invalid_grant("No service account is configured in this sandbox.")
                    return
                try:
                    claims = jwt.decode(assertion, certs={service_account_kid: service_account_pem}, verify=True)
                except Exception:
                    self._invalid_grant("Invalid JWT Signature.")
                    return
                if claims.get("iss") != SERVICE_ACCOUNT_EMAIL:
                    self._invalid_grant("Invalid JWT: the issuer is not a known service account.")
                    return
                if ADWORDS_SCOPE not in str(claims.get("scope", "")).split():
                    self._answer(HTTPStatus.BAD_REQUEST, {"error": "invalid_scope", "error_description": ADWORDS_SCOPE})
                    return
                self._answer(HTTPStatus.OK, self._token_body(mint(SERVICE_ACCOUNT_EMAIL, "")))

            def _revoke(self, token: str) -> None:
                with logins.lock:
                    if token in logins.refresh_tokens and token not in logins.revoked:
                        refresh = token
                    elif token in logins.access_tokens:
                        refresh = logins.access_tokens[token][1]  # revoking an access token ends its grant
                    else:
                        refresh = None
                    if refresh is not None and refresh:
                        logins.revoked.add(refresh)
                if refresh is None:
                    self._answer(
                        HTTPStatus.BAD_REQUEST,
                        {"error": "invalid_token", "error_description": "Token expired or revoked"},
                    )
                    return
                if refresh:
                    drop_access_tokens(refresh)
                elif state is not None:
                    with state.lock:
                        state._tokens.pop(token, None)
                self._answer(HTTPStatus.OK, {})

            # --- Answers -----------------------------------------------------------------------

            @staticmethod
            def _token_body(access: str) -> dict[str, object]:
                return {
                    "access_token": access,
                    "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
                    "scope": ADWORDS_SCOPE,
                    "token_type": "Bearer",
                }

            def _invalid_grant(self, description: str) -> None:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "invalid_grant", "error_description": description})

            def _answer(self, status: HTTPStatus, body: dict[str, object]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

            def _page(self, status: HTTPStatus, markup: str) -> None:
                self._send(status, markup.encode(), "text/html; charset=utf-8")

            def _redirect(self, location: str) -> None:
                self.send_response(HTTPStatus.FOUND)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def _send(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the default writes every request to stderr."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="google-sandbox-oauth", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
