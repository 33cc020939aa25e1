"""Start-up checks of settings that would otherwise fail quietly in production."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def retry_delays_below_visibility_timeout(app_configs=None, **kwargs):
    """With Redis, a task waiting longer than the visibility timeout is delivered twice."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    visibility = options.get("visibility_timeout")
    if visibility is None or not str(settings.CELERY_BROKER_URL).startswith(("redis", "rediss")):
        return []
    if visibility <= settings.TASK_MAX_RETRY_DELAY_SECONDS:
        return [
            Error(
                f"TASK_MAX_RETRY_DELAY_SECONDS ({settings.TASK_MAX_RETRY_DELAY_SECONDS}s) must be below the "
                f"broker visibility timeout ({visibility}s), or delayed retries are delivered twice.",
                hint="Lower TASK_MAX_RETRY_DELAY_SECONDS or raise the visibility timeout.",
                id="adsplatform.E001",
            )
        ]
    return []
