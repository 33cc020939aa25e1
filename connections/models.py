"""Connections: one set of platform credentials each, and the ad accounts they reach.

A connection is what a login gave the platform: a Google OAuth refresh token (from the consent
flow) or a service account key, a Meta long-lived user token (with its expiry) or a system user
token, or, for kind ``environment``, the credentials in the process's settings (nothing is stored:
``make run`` and today's deployments keep working). Every ad account belongs to one connection and
its adapter is built from it (platforms/registry.py, cached per ``credential_version``).

Secrets are encrypted at rest (adsplatform/secret_fields.py) and never shown back: not in admin,
the API, logs or error pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q

from adsplatform.secret_fields import EncryptedCharField
from campaigns.models import Platform

if TYPE_CHECKING:
    from platforms.registry import GoogleAdsConfig, MetaConfig


class Connection(models.Model):
    class Kind(models.TextChoices):
        OAUTH = "oauth", "OAuth login"
        SERVICE_ACCOUNT = "service_account", "Google service account"
        SYSTEM_USER = "system_user", "Meta system user"
        ENVIRONMENT = "environment", "Environment (settings)"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"
        REVOKED = "revoked", "Revoked (disconnected)"

    platform = models.CharField(max_length=16, choices=Platform.choices)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    label = models.CharField(max_length=255, help_text="Who signed in, as the platform names them.")
    external_user_id = models.CharField(
        max_length=255, blank=True, help_text="Meta user / system user id, or the service account's email."
    )
    login_customer_id = models.CharField(
        max_length=32, blank=True, help_text="Google: the manager account calls go through, when one is needed."
    )
    business_id = models.CharField(max_length=32, blank=True, help_text="Meta: the business a system user belongs to.")
    refresh_token = EncryptedCharField(max_length=2048, blank=True, editable=False)
    access_token = EncryptedCharField(max_length=4096, blank=True, editable=False)
    service_account_key = EncryptedCharField(max_length=16384, blank=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When the token expires (Meta user tokens); empty: it does not."
    )
    credential_version = models.PositiveIntegerField(default=1, editable=False)
    status_reason = models.TextField(blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("platform", "label", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("platform",), condition=Q(kind="environment"), name="uniq_environment_connection"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()}: {self.label}"

    def __repr__(self) -> str:  # never a secret, even in a traceback
        return f"<Connection {self.pk} {self.platform}/{self.kind} {self.status}>"

    def adapter_config(self) -> GoogleAdsConfig | MetaConfig:
        """The adapter configuration of this connection (platforms/registry.py builds from it)."""
        from platforms import registry

        if self.platform == Platform.GOOGLE:
            return registry.google_connection_config(
                refresh_token=self.refresh_token,
                service_account_info=self.service_account_key,
                login_customer_id=self.login_customer_id,
            )
        return registry.meta_connection_config(access_token=self.access_token, business_id=self.business_id)
