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


def test_production_without_metrics_token_fails_the_deploy_check(settings):
    from django.core.checks import run_checks

    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    assert "adsplatform.E002" in [e.id for e in run_checks(include_deployment_checks=True)]
    # Not a start-up error: a local run without the token still starts.
    assert "adsplatform.E002" not in [e.id for e in run_checks(include_deployment_checks=False)]
    settings.METRICS_TOKEN = "scrape-secret-0123456789"
    assert "adsplatform.E002" not in [e.id for e in run_checks(include_deployment_checks=True)]
    settings.METRICS_TOKEN = ""
    settings.DEBUG = True
    assert "adsplatform.E002" not in [e.id for e in run_checks(include_deployment_checks=True)]
