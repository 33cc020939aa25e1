from django.apps import AppConfig


class AdsPlatformConfig(AppConfig):
    """The wiring: start-up commands that touch every app live here, on the top floor."""

    name = "adsplatform"
    label = "adsplatform"

    def ready(self) -> None:
        from adsplatform import auth, checks  # noqa: F401  (registers the checks)
        from adsplatform import logging as ads_logging

        ads_logging.connect_signals()
        auth.connect_signals()
