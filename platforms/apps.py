from django.apps import AppConfig


class PlatformsConfig(AppConfig):
    """The integration layer: the official SDKs behind one interface. No models."""

    name = "platforms"
