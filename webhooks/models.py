"""Inbound webhook inbox, the leads it produces, routing rules and outbound deliveries."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from adsplatform.secret_fields import EncryptedCharField, EncryptedURLField


class WebhookSource(models.Model):
    """A sender we accept webhooks from, with up to two secrets live at once for rotation.

    Secrets are stored as given, not hashed: an HMAC signature can only be checked with
    the secret itself. They are never logged and never shown in lists.
    """

    class Kind(models.TextChoices):
        RELAY = "relay", "Make.com / Zapier relay (X-Webhook-Secret or signed)"
        GOOGLE_LEAD_FORM = "google_lead_form", "Google Ads lead form (google_key in body)"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.RELAY)
    # Encrypted at rest (adsplatform/secret_fields.py): kept reversibly, not hashed, because an
    # HMAC signature can only be checked with the secret itself.
    secret = EncryptedCharField(
        max_length=255,
        help_text=(
            "Shared secret, google_key, or a Standard Webhooks signing secret (whsec_...). "
            "WEBHOOK_SECRET / GOOGLE_LEAD_FORM_KEY only create the zapier / google-lead-form source when it "
            "does not exist yet; from then on this field is the secret: a restart does not put the "
            "environment's value back, and changing the environment variable does not change it."
        ),
    )
    previous_secret = EncryptedCharField(
        max_length=255,
        blank=True,
        help_text="Still accepted while senders move to the new secret; clear it when rotation is done.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def active_secrets(self) -> list[str]:
        return [s for s in (self.secret, self.previous_secret) if s]


class WebhookEvent(models.Model):
    """One accepted inbound request, stored verbatim before it is acknowledged."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(WebhookSource, on_delete=models.PROTECT, related_name="events")
    dedupe_key = models.CharField(
        max_length=255, help_text="lead:<lead_id>, msg:<webhook-id> or sha256:<body hash>; unique per source."
    )
    # The body as sent (UTF-8 text, checked at the door), read again with its own content type when
    # processed: signatures stay checkable and a form body is never re-encoded into something else.
    raw_body = models.TextField()
    content_type = models.CharField(
        max_length=255,
        default="application/json",
        help_text="As sent, with its parameters (a multipart body needs its boundary to be read).",
    )
    headers = models.JSONField(default=dict, blank=True, help_text="The headers that matter; never the secret.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    lead = models.ForeignKey("Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    received_at = models.DateTimeField(db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    swept_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time the sweeper re-enqueued it (the broker may have lost it)."
    )

    class Meta:
        ordering = ("-received_at",)
        constraints = [
            models.UniqueConstraint(fields=("source", "dedupe_key"), name="uniq_webhook_event_source_dedupe_key"),
        ]
        indexes = [
            models.Index(fields=("received_at",), name="webhook_event_unprocessed", condition=Q(status="received")),
        ]

    def __str__(self) -> str:
        return f"Event #{self.pk} from {self.source_id} ({self.status})"


class Priority(models.TextChoices):
    URGENT = "urgent", "Urgent"
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"
    LOW = "low", "Low"


PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class LeadStage(models.TextChoices):
    NEW = "new", "New"
    CONTACTED = "contacted", "Contacted"
    QUALIFIED = "qualified", "Qualified"
    WON = "won", "Won"
    LOST = "lost", "Lost"


# The path a lead moves along; a stage at or past LEAD_CONVERSION_STAGE on it is a conversion.
# "lost" is off the path: it never converts, whatever the setting.
LEAD_STAGE_ORDER = (LeadStage.NEW, LeadStage.CONTACTED, LeadStage.QUALIFIED, LeadStage.WON)


def lead_stage_reaches(stage: str, target: str) -> bool:
    """True when ``stage`` is ``target`` or further along ``LEAD_STAGE_ORDER``."""
    if stage not in LEAD_STAGE_ORDER or target not in LEAD_STAGE_ORDER:
        return stage == target
    return LEAD_STAGE_ORDER.index(stage) >= LEAD_STAGE_ORDER.index(target)


class Destination(models.Model):
    """Where routed leads go: the CRM endpoint, an email list or a Slack-compatible webhook."""

    class Kind(models.TextChoices):
        CRM = "crm", "CRM (signed HTTP POST)"
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack-compatible incoming webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = EncryptedURLField(max_length=500, blank=True, help_text="CRM or Slack webhook URL (a Slack URL is a secret).")
    signing_secret = EncryptedCharField(
        max_length=255, blank=True, help_text="CRM only: Standard Webhooks secret used to sign each POST."
    )
    # Outgoing rotation: until it expires, the secret rotated out also signs each POST, so the
    # CRM can switch to the new secret without a window of failing signatures.
    previous_signing_secret = EncryptedCharField(
        max_length=255, blank=True, help_text="CRM only: the secret before the last rotation, signing until it expires."
    )
    previous_signing_secret_expires_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True, help_text="Email only: addresses separated by commas or new lines.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a POST is signed with now: the current one, then the previous one in its grace period."""
        secrets = [self.signing_secret] if self.signing_secret else []
        expires_at = self.previous_signing_secret_expires_at
        if self.previous_signing_secret and expires_at is not None and now < expires_at:
            secrets.append(self.previous_signing_secret)
        return secrets


class RoutingRule(models.Model):
    """An ordered rule: the first active rule whose conditions all hold decides a lead's route.

    ``conditions`` is a list of ``{"field", "op", "value"}``; a rule without conditions
    matches every lead and serves as the default, so keep it last.
    """

    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    is_active = models.BooleanField(default=True)
    conditions = models.JSONField(default=list, blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    destinations = models.ManyToManyField(Destination, blank=True, related_name="rules")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("position", "id")

    def __str__(self) -> str:
        return self.name


class Lead(models.Model):
    """A person who asked to be called back, normalized from one or more webhook events."""

    source = models.ForeignKey(WebhookSource, on_delete=models.PROTECT, related_name="leads")
    external_lead_id = models.CharField(max_length=255, blank=True, help_text="Google's lead_id, when sent.")
    full_name = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, empty when the number could not be read.")
    phone_raw = models.CharField(max_length=64, blank=True, help_text="As submitted, for a human to read.")
    gclid = models.CharField(max_length=255, blank=True)
    gbraid = models.CharField(max_length=255, blank=True, help_text="Google's click id for app-to-web (iOS) clicks.")
    wbraid = models.CharField(max_length=255, blank=True, help_text="Google's click id for web-to-app (iOS) clicks.")
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
    )
    campaign_external_id = models.BigIntegerField(null=True, blank=True)
    form_id = models.BigIntegerField(null=True, blank=True)
    adgroup_id = models.BigIntegerField(null=True, blank=True)
    creative_id = models.BigIntegerField(null=True, blank=True)
    asset_group_id = models.BigIntegerField(null=True, blank=True)
    custom_answers = models.JSONField(default=dict, blank=True)
    is_test = models.BooleanField(default=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    matched_rule = models.ForeignKey(RoutingRule, null=True, blank=True, on_delete=models.SET_NULL)
    stage = models.CharField(max_length=16, choices=LeadStage.choices, default=LeadStage.NEW)
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    conversion_created_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the lead's Google conversion (by click id, else by hashed email/phone) was handed to "
        "the conversions app; set once, so moving the lead again makes no second one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-received_at",)
        constraints = [
            # The same Google lead relayed by Make.com and sent by Google directly is one lead.
            models.UniqueConstraint(
                fields=("external_lead_id",), condition=~Q(external_lead_id=""), name="uniq_lead_external_lead_id"
            ),
        ]
        indexes = [models.Index(fields=("priority", "-received_at")), models.Index(fields=("stage",))]

    def __str__(self) -> str:
        return f"Lead #{self.pk}"


class LeadDelivery(models.Model):
    """One lead sent to one destination; the unique pair is what makes "once" hold.

    A low-priority lead's email and Slack deliveries are not sent one by one: they wait
    (``awaiting_digest``) for the periodic digest, which claims them (``digest_sending``)
    and lists them all in one message per destination.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        AWAITING_DIGEST = "awaiting_digest", "Awaiting digest"
        DIGEST_SENDING = "digest_sending", "Sending in digest"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="deliveries")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While sending: another worker may take over after this."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("lead", "destination")
        verbose_name_plural = "lead deliveries"
        constraints = [
            models.UniqueConstraint(fields=("lead", "destination"), name="uniq_lead_delivery_lead_destination"),
        ]
        indexes = [models.Index(fields=("status", "next_attempt_at"))]

    def __str__(self) -> str:
        return f"Lead #{self.lead_id} → {self.destination_id} ({self.status})"
