"""The start-up check that keeps retry delays below the Redis visibility timeout."""

from adsplatform.checks import retry_delays_below_visibility_timeout


def test_retry_delay_longer_than_visibility_timeout_is_an_error(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    settings.TASK_MAX_RETRY_DELAY_SECONDS = 900
    assert retry_delays_below_visibility_timeout() == []
    settings.TASK_MAX_RETRY_DELAY_SECONDS = 7200
    errors = retry_delays_below_visibility_timeout()
    assert [e.id for e in errors] == ["adsplatform.E001"]
    assert "7200" in errors[0].msg
