"""The sandboxes' OAuth side, spoken to over HTTP as the platforms' own clients would."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from platforms.base import AuthError
from platforms.registry import build_adapter, google_connection_config, meta_connection_config
from platforms.sandbox import credentials
from platforms.sandbox.google.oauth import ADWORDS_SCOPE, SERVICE_ACCOUNT_FILENAME, pkce_challenge
from platforms.sandbox.meta import oauth as meta_oauth

REDIRECT = "http://127.0.0.1:9/connect/google/callback"
VERIFIER = "v" * 64


@pytest.fixture(autouse=True)
def _fresh_logins(sandbox):
    yield
    sandbox.google.state.oauth_logins.reset()
    meta_oauth.logins_of(sandbox.meta.state).reset()


def _google_code(sandbox, login: str, *, offline: bool = True) -> str:
    base = f"http://127.0.0.1:{sandbox.google.oauth_port}"
    params = {
        "client_id": credentials.GOOGLE_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": ADWORDS_SCOPE,
        "state": "st-1",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "access_type": "offline" if offline else "online",
        "prompt": "consent",
    }
    page = requests.get(f"{base}/o/oauth2/v2/auth", params=params, timeout=5)
    assert page.status_code == 200 and 'id="allow"' in page.text and login in page.text
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    form.update(login=login, decision="allow")
    answer = requests.post(f"{base}/o/oauth2/v2/auth/approve", data=form, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert back["state"] == ["st-1"]
    return back["code"][0]


def _exchange(sandbox, code: str, verifier: str = VERIFIER) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": credentials.GOOGLE_CLIENT_ID,
            "client_secret": credentials.GOOGLE_CLIENT_SECRET,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        timeout=5,
    )


def test_google_consent_code_exchange_and_the_login_s_own_accounts(sandbox):
    tokens = _exchange(sandbox, _google_code(sandbox, "agency@ibvi.example")).json()
    assert tokens["refresh_token"] and tokens["token_type"] == "Bearer"
    adapter = build_adapter(google_connection_config(refresh_token=tokens["refresh_token"]))
    try:
        accounts = {a.external_id: a.manager_customer_id for a in adapter.list_accounts()}
    finally:
        adapter.close()
    assert accounts == {"3456789012": "1000000002"}  # not the demo manager's clients


def test_google_code_is_single_use_and_pkce_is_checked(sandbox):
    code = _google_code(sandbox, "ops@ibvi.example")
    wrong = _exchange(sandbox, code, verifier="w" * 64)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    again = _exchange(sandbox, code)  # the refused attempt used the code up
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_google_revocation_makes_refresh_invalid_grant(sandbox):
    tokens = _exchange(sandbox, _google_code(sandbox, "agency@ibvi.example")).json()
    revoke = requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/revoke", data={"token": tokens["refresh_token"]}, timeout=5
    )
    assert revoke.status_code == 200
    adapter = build_adapter(google_connection_config(refresh_token=tokens["refresh_token"]))
    with pytest.raises(AuthError) as caught:
        adapter.check_credentials()
    assert "invalid_grant" in caught.value.message


def test_google_service_account_key_signs_a_jwt_bearer_grant(sandbox):
    info = (sandbox.cert_dir / SERVICE_ACCOUNT_FILENAME).read_text()
    adapter = build_adapter(google_connection_config(service_account_info=info))
    try:
        assert [a.external_id for a in adapter.list_accounts()] == ["3456789012"]
    finally:
        adapter.close()
    forged = json.loads(info)
    forged["private_key_id"] = "0" * 40
    with pytest.raises(AuthError):
        build_adapter(google_connection_config(service_account_info=json.dumps(forged))).check_credentials()


def _meta_code(sandbox, person: str) -> str:
    base = sandbox.meta.url
    params = {
        "client_id": credentials.META_APP_ID,
        "redirect_uri": REDIRECT,
        "state": "st-2",
        "scope": "ads_read,ads_management,business_management",
        "response_type": "code",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
    }
    page = requests.get(f"{base}/v26.0/dialog/oauth", params=params, timeout=5)
    assert page.status_code == 200 and 'id="allow"' in page.text
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    form.update(person=person, decision="allow")
    answer = requests.post(f"{base}/v26.0/dialog/oauth/confirm", data=form, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def _graph(sandbox, path: str, **params) -> dict:
    return requests.get(f"{sandbox.meta.url}/v26.0/{path}", params=params, timeout=5).json()


def test_meta_dialog_exchange_long_lived_debug_and_accounts(sandbox):
    app = {"client_id": credentials.META_APP_ID, "client_secret": credentials.META_APP_SECRET}
    short = _graph(
        sandbox, "oauth/access_token", **app, redirect_uri=REDIRECT, code=_meta_code(sandbox, "10000000000002"),
        code_verifier=VERIFIER,
    )  # fmt: skip
    assert short["expires_in"] < 86400
    long = _graph(
        sandbox, "oauth/access_token", **app, grant_type="fb_exchange_token", fb_exchange_token=short["access_token"]
    )
    assert long["expires_in"] > 50 * 86400
    debug = _graph(
        sandbox, "debug_token", input_token=long["access_token"], access_token=f"{credentials.META_APP_ID}|{credentials.META_APP_SECRET}"
    )["data"]  # fmt: skip
    assert debug["is_valid"] and debug["type"] == "USER" and "ads_management" in debug["scopes"]
    mine = _graph(sandbox, "me/adaccounts", access_token=long["access_token"], fields="account_id,name")
    assert [a["account_id"] for a in mine["data"]] == ["300000000000002", "300000000000003"]
    owned = _graph(sandbox, "200000000000002/owned_ad_accounts", access_token=long["access_token"], fields="account_id")
    client = _graph(
        sandbox, "200000000000002/client_ad_accounts", access_token=long["access_token"], fields="account_id"
    )
    assert [a["account_id"] for a in owned["data"]] == ["300000000000002"]
    assert [a["account_id"] for a in client["data"]] == ["300000000000003"]
    # The SDK adapter reads the agency's campaigns with appsecret_proof, not the demo account's.
    adapter = build_adapter(meta_connection_config(access_token=long["access_token"]))
    ref = type("Ref", (), {"external_id": "300000000000002", "currency_code": "USD", "time_zone": "UTC"})()
    assert len(list(adapter.list_campaigns(ref))) == 4
    demo = type("Ref", (), {"external_id": "300000000000001", "currency_code": "EUR", "time_zone": "UTC"})()
    with pytest.raises(Exception):  # noqa: B017 - not this login's account
        list(adapter.list_campaigns(demo))
    gone = requests.delete(
        f"{sandbox.meta.url}/v26.0/me/permissions", params={"access_token": long["access_token"]}, timeout=5
    )
    assert gone.json() == {"success": True}
    with pytest.raises(AuthError) as caught:
        adapter.check_credentials()
    assert caught.value.code.startswith("190")
