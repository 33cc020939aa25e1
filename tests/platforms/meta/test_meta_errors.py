"""Failures as the real Graph API answers them, and what the adapter tells its caller."""

from __future__ import annotations

import logging
import time
import traceback

import pytest

from platforms.base import Account, AuthError, ConversionEvent, PermanentError, RateLimitedError, TransientError
from platforms.meta import MetaPlatform
from platforms.sandbox import credentials
from platforms.sandbox.meta import MetaSandbox


def test_rate_limit_fault_gives_the_announced_delay(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    sandbox.state.faults.quota = 1.0
    sandbox.state.faults.quota_retry_seconds = 180  # announced as estimated_time_to_regain_access = 3 minutes

    with pytest.raises(RateLimitedError) as limited:
        list(platform.list_campaigns(eur_account))

    assert limited.value.code == "80004/2446079"  # too many calls to this ad account
    assert limited.value.retry_after_seconds == 180
    # Until the wait is over the adapter does not even send the next call.
    sent = len(sandbox.state.requests)
    with pytest.raises(RateLimitedError) as held_back:
        platform.get_campaign(eur_account, "120210000000001")
    assert held_back.value.code == "throttled"
    assert 170 < held_back.value.retry_after_seconds <= 180
    assert len(sandbox.state.requests) == sent


def test_user_rate_limit_on_a_non_account_call(platform: MetaPlatform, sandbox: MetaSandbox) -> None:
    sandbox.state.faults.quota = 1.0
    sandbox.state.faults.quota_retry_seconds = 60

    with pytest.raises(RateLimitedError) as limited:
        platform.check_credentials()

    assert limited.value.code == "17/2446079"
    assert limited.value.retry_after_seconds == 60


def test_usage_above_the_threshold_slows_down_and_full_usage_stops(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account, pauses: list[float]
) -> None:
    sandbox.state.usage_pct = 95
    platform.get_campaign(eur_account, "120210000000001")
    assert pauses == [pytest.approx(5.0)]  # halfway from 90 % to 100 % → half of the 10 s maximum

    sandbox.state.usage_pct, sandbox.state.regain_minutes = 100, 2
    platform.get_campaign(eur_account, "120210000000001")  # this answer still arrives...
    sent = len(sandbox.state.requests)
    with pytest.raises(RateLimitedError) as held_back:
        platform.get_campaign(eur_account, "120210000000001")  # ...the next call is not sent
    assert 110 < held_back.value.retry_after_seconds <= 120
    assert len(sandbox.state.requests) == sent


@pytest.mark.parametrize(
    ("override", "code"),
    [({"access_token": "not-the-token"}, "190/467"), ({"app_secret": "not-the-app-secret"}, "100")],
)
def test_wrong_credentials_are_an_auth_error(make_platform, override: dict[str, str], code: str) -> None:
    platform = make_platform(**override)

    with pytest.raises(AuthError) as refused:
        platform.check_credentials()

    assert refused.value.code == code


def test_expired_token_fault_is_an_auth_error(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    sandbox.state.faults.auth = 1.0

    with pytest.raises(AuthError) as refused:
        list(platform.iter_daily_metrics(eur_account, *_last_days(3)))

    assert refused.value.code == "190/463"


def test_wrong_business_is_an_auth_error(make_platform) -> None:
    platform = make_platform(business_id="299999999999999")

    with pytest.raises(AuthError, match="299999999999999"):
        platform.check_credentials()


def test_unavailable_is_transient_not_rate_limited(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    sandbox.state.faults.unavailable = 1.0

    with pytest.raises(TransientError) as unavailable:
        platform.list_accounts()

    assert not isinstance(unavailable.value, RateLimitedError)
    assert unavailable.value.code == "2"
    assert unavailable.value.details["http_status"] == 503


def test_failure_on_a_later_page_surfaces_from_the_stream(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    stream = platform.iter_daily_metrics(eur_account, *_last_days(5))
    first = next(stream)  # the first page is in
    sandbox.state.faults.unavailable = 1.0

    with pytest.raises(TransientError):
        list(stream)
    assert first.campaign_external_id


def test_lost_answer_after_the_events_were_stored_is_transient_and_safe_to_resend(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account
) -> None:
    event = ConversionEvent("Lead", int(time.time()) - 30, "lead-7", "website", user_data={"external_id": "u-7"})
    sandbox.state.faults.timeout_after_accept = 1.0

    with pytest.raises(TransientError) as lost:
        platform.upload_conversions(eur_account, [event], destination_id=sandbox.state.pixel_id)
    assert lost.value.code == "connection_dropped"
    assert sandbox.state.event_count("Lead", "lead-7") == 1  # Meta has it; we never heard back

    sandbox.state.faults.reset()
    resent = platform.upload_conversions(eur_account, [event], destination_id=sandbox.state.pixel_id)
    assert [o.status for o in resent.outcomes] == ["uploaded"]
    assert sandbox.state.event_count("Lead", "lead-7") == 1


def test_the_api_version_setting_is_honoured(make_platform, sandbox: MetaSandbox, eur_account: Account) -> None:
    platform = make_platform(api_version="v25.0")

    list(platform.list_campaigns(eur_account))

    assert set(sandbox.state.versions_seen) == {"v25.0"}
    assert all(path.startswith("/v25.0/") for _, path in sandbox.state.requests)


def test_a_version_meta_no_longer_serves_is_a_configuration_error(make_platform, eur_account: Account) -> None:
    platform = make_platform(api_version="v19.0")

    with pytest.raises(AuthError) as refused:
        platform.get_campaign(eur_account, "120210000000001")

    assert refused.value.code == "2635"


def test_unknown_campaign_is_permanent(platform: MetaPlatform, eur_account: Account) -> None:
    with pytest.raises(PermanentError) as missing:
        platform.get_campaign(eur_account, "999999999999999")
    assert missing.value.code == "100/33"


def test_no_secret_reaches_the_logs_of_failing_calls(
    platform: MetaPlatform, sandbox: MetaSandbox, eur_account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    # Every logger at DEBUG: the project's settings quiet urllib3, whose request lines quote the URL.
    for name in (None, "urllib3", "requests", "facebook_business", "platforms"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = (credentials.META_ACCESS_TOKEN, credentials.META_APP_SECRET)
    failures: list[BaseException] = []

    sandbox.state.faults.unavailable = 1.0
    with pytest.raises(TransientError) as unavailable:
        list(platform.list_campaigns(eur_account))
    failures.append(unavailable.value)

    sandbox.state.faults.reset()
    sandbox.state.faults.auth = 1.0
    with pytest.raises(AuthError) as refused:
        platform.check_credentials()
    failures.append(refused.value)

    sandbox.stop()  # nothing listens any more: requests' ConnectionError quotes the full URL
    with pytest.raises(TransientError) as unreachable:
        platform.get_campaign(eur_account, "120210000000001")
    assert unreachable.value.code in ("unreachable", "connection_dropped")
    failures.append(unreachable.value)

    lines = [record.getMessage() for record in caplog.records]
    lines += [caplog.text]
    for failure in failures:
        lines += [str(failure), repr(failure), "".join(traceback.format_exception(failure))]
    # The capture is not vacuous: request lines and the adapter's warnings were logged.
    assert any("GET /v26.0/act_300000000000001/campaigns?access_token=[redacted]" in line for line in lines)
    assert any("Meta call failed" in line for line in lines)
    for secret in secrets:
        assert not [line for line in lines if secret in line], secret
    assert not any("appsecret_proof=" in line and "appsecret_proof=[redacted]" not in line for line in lines)


def _last_days(count: int):
    from datetime import date, timedelta

    today = date.today()
    return today - timedelta(days=count), today - timedelta(days=1)
