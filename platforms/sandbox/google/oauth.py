"""The OAuth 2.0 token endpoint, so google-auth's real refresh-token flow runs offline.

Only ``POST /token`` with ``grant_type=refresh_token`` is served, answering like
oauth2.googleapis.com: an access token and ``expires_in`` for the sandbox client and refresh
token; ``401 invalid_client`` for an unknown client or wrong secret; ``400 invalid_grant``
for a wrong refresh token. Plain HTTP on localhost: the token URI is configurable in the
client, unlike the gRPC endpoint's TLS.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ACCESS_TOKEN_LIFETIME_SECONDS = 3599


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


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
    ) -> None:
        expected = (client_id, client_secret, refresh_token)

        class TokenHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/token":
                    self._answer(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if form.get("grant_type") != "refresh_token":
                    self._answer(HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"})
                    return
                if not (
                    _same(form.get("client_id", ""), expected[0]) and _same(form.get("client_secret", ""), expected[1])
                ):
                    self._answer(
                        HTTPStatus.UNAUTHORIZED,
                        {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                    )
                    return
                if not _same(form.get("refresh_token", ""), expected[2]):
                    self._answer(
                        HTTPStatus.BAD_REQUEST,
                        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
                    )
                    return
                self._answer(
                    HTTPStatus.OK,
                    {
                        "access_token": issue_token(ACCESS_TOKEN_LIFETIME_SECONDS),
                        "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
                        "scope": "https://www.googleapis.com/auth/adwords",
                        "token_type": "Bearer",
                    },
                )

            def _answer(self, status: HTTPStatus, body: dict[str, object]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the default writes every request to stderr."""

        self._server = ThreadingHTTPServer((host, port), TokenHandler)
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
