"""Failures from the emulator's real gRPC status codes and trailers, mapped to what to do."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import date, timedelta

import pytest
from google_sandbox_support import US_ACCOUNT

from platforms.base import AuthError, PermanentError, PlatformError, RateLimitedError, TransientError
from platforms.sandbox import credentials
from platforms.sandbox.google.certs import ensure_tls_files


def test_quota_error_is_rate_limited_with_the_announced_delay(sandbox, google):
    sandbox.state.faults.quota = 1.0
    sandbox.state.faults.quota_retry_seconds = 7

    with pytest.raises(RateLimitedError) as streamed:
        list(google.list_campaigns(US_ACCOUNT))
    with pytest.raises(RateLimitedError) as unary:
        google.check_credentials()  # a unary call this time

    for error in (streamed.value, unary.value):
        assert error.retry_after_seconds == 7
        assert error.code == "RESOURCE_TEMPORARILY_EXHAUSTED"
        assert error.request_id  # read from the trailer of an api_core ResourceExhausted
    assert [c.status for c in sandbox.state.calls] == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]


def test_auth_fault_is_an_auth_error(sandbox, google):
    sandbox.state.faults.auth = 1.0
    with pytest.raises(AuthError) as error:
        list(google.list_campaigns(US_ACCOUNT))
    assert error.value.code == "OAUTH_TOKEN_INVALID"
    assert not isinstance(error.value, TransientError)


def test_wrong_refresh_token_is_an_auth_error(sandbox, make_adapter):
    google = make_adapter(sandbox, refresh_token="not-the-refresh-token")
    with pytest.raises(AuthError) as error:
        google.check_credentials()
    assert "invalid_grant" in str(error.value)
    assert sandbox.state.calls == []  # never reached the API


def test_wrong_client_secret_is_an_auth_error(sandbox, make_adapter):
    with pytest.raises(AuthError, match="invalid_client"):
        make_adapter(sandbox, client_secret="not-the-secret").list_accounts()


def test_wrong_developer_token_is_an_auth_error(sandbox, make_adapter):
    with pytest.raises(AuthError) as error:
        make_adapter(sandbox, developer_token="not-the-developer-token").check_credentials()
    assert error.value.code == "DEVELOPER_TOKEN_INVALID"


def test_developer_token_is_optional(sandbox, make_adapter):
    make_adapter(sandbox, developer_token="").check_credentials()
    assert not sandbox.state.calls[-1].developer_token_sent


def test_a_login_customer_that_does_not_manage_the_account_is_an_auth_error(sandbox, make_adapter):
    google = make_adapter(sandbox)
    with pytest.raises(AuthError) as error:
        list(google.list_campaigns(replace(US_ACCOUNT, manager_customer_id="2345678901")))
    assert error.value.code == "INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION"


def test_unavailable_is_transient(sandbox, google):
    sandbox.state.faults.unavailable = 1.0
    with pytest.raises(TransientError) as error:
        list(google.iter_daily_metrics(US_ACCOUNT, *_two_days()))
    assert not isinstance(error.value, RateLimitedError)
    assert error.value.code == "ServiceUnavailable"


def test_a_budget_change_lost_after_acceptance_is_transient_and_applied(sandbox, google):
    campaign = google.get_campaign(US_ACCOUNT, "20000000005")
    sandbox.state.faults.timeout_after_accept = 1.0

    with pytest.raises(TransientError):
        google.update_daily_budget(US_ACCOUNT, campaign, 77_000_000)

    sandbox.state.faults.reset()
    assert google.get_campaign(US_ACCOUNT, "20000000005").daily_budget_micros == 77_000_000


def test_a_bad_query_is_permanent(sandbox, google):
    with pytest.raises(PermanentError) as error:
        list(google._stream("1234567890", "1000000001", "SELECT campaign.nonsense FROM campaign"))
    assert error.value.code == "UNRECOGNIZED_FIELD"


def _capture_every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """caplog sees the root logger only; google-api-core turns propagation off on "google",
    so its subtree (google-ads' request logging, google-auth) is captured explicitly."""
    caplog.set_level(logging.DEBUG)
    for name in ["google", *logging.root.manager.loggerDict]:
        caplog.set_level(logging.DEBUG, logger=name)
    google_root = logging.getLogger("google")
    google_root.addHandler(caplog.handler)
    _handlers_to_remove.append((google_root, caplog.handler))


_handlers_to_remove: list[tuple[logging.Logger, logging.Handler]] = []


@pytest.fixture
def _release_log_handlers():
    yield
    while _handlers_to_remove:
        logger, handler = _handlers_to_remove.pop()
        logger.removeHandler(handler)


@pytest.mark.usefixtures("_release_log_handlers")
def test_no_secret_appears_in_logs_or_errors_of_failing_calls(sandbox, make_adapter, caplog):
    _capture_every_logger_at_debug(caplog)
    wrong_refresh = "wrong-refresh-token-7f3a9c"
    secrets = [
        credentials.GOOGLE_REFRESH_TOKEN,
        credentials.GOOGLE_CLIENT_SECRET,
        credentials.GOOGLE_DEVELOPER_TOKEN,
        wrong_refresh,
    ]
    failures: list[PlatformError] = []

    refused = make_adapter(sandbox, refresh_token=wrong_refresh)
    with pytest.raises(AuthError) as error:
        refused.check_credentials()
    failures.append(error.value)

    good = make_adapter(sandbox)
    sandbox.state.faults.auth = 1.0
    with pytest.raises(AuthError) as error:
        list(good.list_campaigns(US_ACCOUNT))
    failures.append(error.value)
    sandbox.state.faults.reset()
    sandbox.state.faults.quota = 1.0
    with pytest.raises(RateLimitedError) as error:
        good.check_credentials()
    failures.append(error.value)

    access_token = good._credentials.token  # a credential too, for its lifetime
    assert access_token
    secrets.append(access_token)
    assert caplog.records, "the failing calls logged nothing: the test would prove nothing"
    assert any("Google Ads" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    # The client library's own request log was captured too, metadata and all.
    assert any(r.name.startswith("google.ads") and "developer-token" in r.getMessage() for r in caplog.records)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records) + caplog.text
    texts = [logged] + [f"{e!s} {e!r} {e.details!r}" for e in failures] + [repr(good), repr(good.config)]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_token_endpoint_answers_like_google(sandbox):
    def post(**form: str) -> tuple[int, dict]:
        # The sandbox's own http:// token URI.
        request = urllib.request.Request(sandbox.token_uri, data=urllib.parse.urlencode(form).encode(), method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    good = {
        "grant_type": "refresh_token",
        "client_id": credentials.GOOGLE_CLIENT_ID,
        "client_secret": credentials.GOOGLE_CLIENT_SECRET,
        "refresh_token": credentials.GOOGLE_REFRESH_TOKEN,
    }
    status, body = post(**good)
    assert status == 200 and body["expires_in"] > 0 and body["access_token"]
    assert post(**{**good, "refresh_token": "nope"}) == (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    assert post(**{**good, "client_secret": "nope"})[0] == 401


def test_the_certificate_is_reused_across_restarts(sandbox, sandbox_cert_dir):
    before = sandbox.ca_path.read_bytes()
    assert ensure_tls_files(sandbox_cert_dir).ca_path.read_bytes() == before


def _two_days() -> tuple[date, date]:
    today = date.today()
    return today - timedelta(days=2), today - timedelta(days=1)
