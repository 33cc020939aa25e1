"""Start-up checks of settings that would otherwise fail quietly in production."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


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


@register(Tags.security, deploy=True)
def metrics_token_in_production(app_configs=None, **kwargs):
    """/metrics tells anyone who asks what the platform is doing: production needs METRICS_TOKEN."""
    if settings.DEBUG or getattr(settings, "METRICS_TOKEN", ""):
        return []
    return [
        Error(
            "METRICS_TOKEN is not set: /metrics answers everyone.",
            hint="Set METRICS_TOKEN (e.g. fly secrets set METRICS_TOKEN=...) and scrape with "
            "Authorization: Bearer <METRICS_TOKEN>.",
            id="adsplatform.E002",
        )
    ]


@register(Tags.security, deploy=True)
def field_encryption_keys_in_production(app_configs=None, **kwargs):
    """Secrets at rest are encrypted; production gives the keys rather than deriving one from SECRET_KEY."""
    if settings.DEBUG or getattr(settings, "FIELD_ENCRYPTION_KEYS", []):
        return []
    return [
        Error(
            "FIELD_ENCRYPTION_KEYS is not set: stored secrets are encrypted with a key derived from "
            "SECRET_KEY, and rotating SECRET_KEY would make them unreadable.",
            hint='Set FIELD_ENCRYPTION_KEYS to a Fernet key (python -c "from cryptography.fernet import '
            'Fernet; print(Fernet.generate_key().decode())"); several, comma-separated, newest first, to rotate.',
            id="adsplatform.E003",
        )
    ]
