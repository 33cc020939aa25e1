"""The conversion ledger, the conversion actions conversions are sent to, and service API keys."""

from __future__ import annotations

from django.db import models

from campaigns.models import AdAccount, Platform


class ConversionAction(models.Model):
    """Where conversions of an ad account go: a Google conversion action or a Meta pixel (dataset)."""

    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="conversion_actions")
    external_id = models.CharField(
        max_length=64, help_text="Google conversion action id (digits), or the Meta pixel / dataset id."
    )
    name = models.CharField(max_length=255)
    is_active = models.BooleanField(default=True, help_text="Inactive actions accept no new conversions.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("account", "name")
        constraints = [
            models.UniqueConstraint(fields=("account", "external_id"), name="uniq_conversion_action_account_external"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"

    @property
    def platform(self) -> str:
        return self.account.platform

    @property
    def resource_name(self) -> str:
        """Google's name for the action; empty for a Meta pixel."""
        if self.account.platform != Platform.GOOGLE:
            return ""
        return f"customers/{self.account.external_id}/conversionActions/{self.external_id}"


class ServiceScope(models.TextChoices):
    CONVERSIONS_WRITE = "conversions:write", "conversions:write: post conversions"
    CONVERSION_ACTIONS_READ = "conversion_actions:read", "conversion_actions:read: list the actions to post to"


def default_service_scopes() -> list[str]:
    # A server posting conversions needs the action ids it must post with.
    return [ServiceScope.CONVERSIONS_WRITE.value, ServiceScope.CONVERSION_ACTIONS_READ.value]


class ServiceApiKey(models.Model):
    """A server-to-server key for ``X-Service-Auth``. Only its SHA-256 is kept; the key is shown once."""

    name = models.CharField(max_length=100, unique=True, help_text="Who uses it, e.g. 'checkout service'.")
    scopes = models.JSONField(default=default_service_scopes, help_text="What the key may do.")
    accounts = models.ManyToManyField(
        AdAccount,
        blank=True,
        related_name="+",
        help_text="The accounts it may post to and read the actions of; none: every account.",
    )
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("name",)
        verbose_name = "service API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class Conversion(models.Model):
    """One conversion on its way to a platform. Identifiers are stored hashed, never raw."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        UPLOADING = "uploading", "Uploading"
        UPLOADED = "uploaded", "Uploaded"
        REJECTED = "rejected", "Rejected by the platform"
        FAILED = "failed", "Failed (gave up)"
        EXPIRED = "expired", "Expired (too old to send)"

    platform = models.CharField(max_length=16, choices=Platform.choices)
    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="conversions")
    action = models.ForeignKey(ConversionAction, on_delete=models.PROTECT, related_name="conversions")
    dedupe_key = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of what makes this conversion the same one when sent again."
    )
    # What the platform dedupes on, kept in clear so operators can find a conversion.
    order_id = models.CharField(max_length=255, blank=True, help_text="Google order id / Meta custom_data.order_id.")
    event_name = models.CharField(max_length=100, blank=True)
    event_id = models.CharField(max_length=255, blank=True)
    click_id_type = models.CharField(max_length=8, blank=True, help_text="gclid, gbraid, wbraid, or fbc.")
    hashed_email = models.CharField(max_length=64, blank=True)
    hashed_phone = models.CharField(max_length=64, blank=True)
    value_micros = models.BigIntegerField(null=True, blank=True)
    currency_code = models.CharField(max_length=3, blank=True)
    occurred_at = models.DateTimeField(help_text="When the conversion happened, as the sender said; never upload time.")
    payload = models.JSONField(help_text="What is sent to the platform, identifiers already hashed.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it for upload.")
    last_error = models.TextField(blank=True)
    platform_code = models.CharField(max_length=128, blank=True)
    platform_message = models.TextField(blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, help_text="The platform's request / trace id.")
    source = models.CharField(max_length=150, blank=True, help_text="The service key or user that sent it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=("status", "next_attempt_at"), name="conversion_due_idx"),
            models.Index(fields=("account", "status"), name="conversion_account_status_idx"),
            models.Index(fields=("created_at",), name="conversion_created_idx"),
            models.Index(fields=("order_id",), name="conversion_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} conversion #{self.pk} ({self.status})"


class IngestRequest(models.Model):
    """An ``Idempotency-Key`` seen on an ingest request, and the conversions that answered it."""

    platform = models.CharField(max_length=16, choices=Platform.choices)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the body, to refuse a reused key.")
    conversion_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("platform", "key"), name="uniq_ingest_request_platform_key"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} {self.key}"
