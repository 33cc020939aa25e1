"""Budget changes (the seed's optimization_runs), account budget settings, alerts, platform calls."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from adsplatform.secret_fields import EncryptedURLField
from campaigns.models import AdAccount, AdGroup, Campaign


class OptimizationRun(models.Model):
    """A change record: one budget (daily or lifetime) or status change of a campaign or of one
    of its ad groups / ad sets, from staff, the API or the optimizer.

    Append-only: a run moves forward through its statuses and is never edited back or deleted.
    The model keeps its first name (the API's ``/optimization/runs/``, the seed's table).
    """

    class Kind(models.TextChoices):
        BUDGET = "budget", "Budget"
        STATUS = "status", "Status"

    class Level(models.TextChoices):
        CAMPAIGN = "campaign", "Campaign"
        AD_GROUP = "ad_group", "Ad group / ad set"

    class BudgetPeriod(models.TextChoices):
        DAILY = "daily", "Daily"
        LIFETIME = "lifetime", "Lifetime"

    class Source(models.TextChoices):
        STAFF = "staff", "Staff (admin)"
        OPTIMIZER = "optimizer", "Optimizer"
        API = "api", "API"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed (awaiting approval)"
        PENDING = "pending", "Pending (being pushed)"
        APPLIED = "applied", "Applied (platform confirmed)"
        FAILED = "failed", "Failed (platform refused)"
        REJECTED = "rejected", "Rejected by staff"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BUDGET)
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.CAMPAIGN)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="optimization_runs")
    # Set when the change is on an ad group / ad set (the campaign is still its campaign).
    ad_group = models.ForeignKey(
        AdGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="optimization_runs"
    )
    budget_period = models.CharField(max_length=16, choices=BudgetPeriod.choices, blank=True, default="daily")
    old_budget_micros = models.BigIntegerField(null=True, blank=True)
    new_budget_micros = models.BigIntegerField(null=True, blank=True)
    old_status = models.CharField(max_length=16, blank=True)
    new_status = models.CharField(max_length=16, blank=True)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The name as it was: the audit trail keeps it when the user is deleted (the key goes NULL).
    requested_by_name = models.CharField(max_length=150, blank=True, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    platform_response = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    # What the requester explicitly accepted, kept for the audit trail.
    confirmed_large_change = models.BooleanField(default=False)
    confirmed_shared_budget = models.BooleanField(default=False)
    # Optimizer proposals: which optimizer run made them, and who approved or rejected them.
    proposal_kind = models.CharField(max_length=16, blank=True, help_text="reallocation | pacing")
    proposal_batch = models.CharField(max_length=36, blank=True, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True)
    # Pushing: attempts so far, and when the next one is due (the sweeper re-sends lost ones).
    push_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "change record"
        indexes = [
            models.Index(fields=("campaign", "-created_at")),
            models.Index(fields=("status",)),
            models.Index(fields=("ad_group", "-created_at"), name="optrun_ad_group_created_idx"),
        ]
        permissions = [("change_budget", "Can change campaign budgets and apply optimizer proposals")]
        constraints = [
            # Two pushes racing on one object could each read the same "current" value and
            # overwrite each other; one change in flight per object makes that impossible.
            models.UniqueConstraint(
                fields=("campaign",),
                condition=Q(status="pending", ad_group__isnull=True),
                name="uniq_pending_change_per_campaign",
            ),
            models.UniqueConstraint(
                fields=("ad_group",), condition=Q(status="pending"), name="uniq_pending_change_per_ad_group"
            ),
            models.CheckConstraint(
                condition=(Q(kind="budget", new_budget_micros__isnull=False) | Q(kind="status") & ~Q(new_status="")),
                name="change_record_has_new_value",
            ),
            models.CheckConstraint(
                condition=Q(level="campaign", ad_group__isnull=True) | Q(level="ad_group", ad_group__isnull=False),
                name="change_record_level_matches_target",
            ),
        ]

    def __str__(self) -> str:
        what = f"ad group {self.ad_group_id}" if self.ad_group_id else f"campaign {self.campaign_id}"
        if self.kind == self.Kind.STATUS:
            return f"Status change #{self.pk} of {what}: {self.old_status or '—'} → {self.new_status}"
        return (
            f"{self.get_budget_period_display()} budget change #{self.pk} of {what}: "
            f"{self.old_budget_micros} → {self.new_budget_micros}"
        )

    @property
    def change_micros(self) -> int:
        return (self.new_budget_micros or 0) - (self.old_budget_micros or 0)


class AccountBudgetSettings(models.Model):
    """How the budgets of one ad account may be changed and optimized (amounts in account currency)."""

    account = models.OneToOneField(AdAccount, on_delete=models.CASCADE, related_name="budget_settings")
    max_campaign_daily_budget_micros = models.BigIntegerField(
        null=True, blank=True, help_text="The account's cap: no campaign's daily budget may be set above it."
    )
    monthly_budget_micros = models.BigIntegerField(
        null=True, blank=True, help_text="Monthly cap the optimizer paces the account's spend to."
    )
    target_cpa_micros = models.BigIntegerField(
        null=True, blank=True, help_text="Target cost per conversion; the optimizer moves budget toward it."
    )
    target_roas = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Target return on ad spend (conversion value / cost), used when no target CPA is set.",
    )
    min_campaign_daily_budget_micros = models.BigIntegerField(
        null=True, blank=True, help_text="The optimizer never proposes less; empty uses the global default."
    )
    optimizer_enabled = models.BooleanField(default=True, help_text="Include this account in the daily optimizer run.")
    auto_apply = models.BooleanField(
        default=False, help_text="Push the optimizer's proposals without waiting for approval."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "account budget settings"
        verbose_name_plural = "account budget settings"

    def __str__(self) -> str:
        return f"Budget settings of {self.account}"


class GuardrailChange(models.Model):
    """One guardrail setting changed: who, when, old → new. Append-only, like budget changes,
    because a raised cap or auto-apply switched on lets the optimizer push money unasked."""

    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="guardrail_changes")
    field = models.CharField(max_length=64)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_by_name = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-changed_at", "-id")
        indexes = [models.Index(fields=("account", "-changed_at"))]

    def __str__(self) -> str:
        return f"{self.account}: {self.field} {self.old_value or '—'} → {self.new_value or '—'}"


class Alert(models.Model):
    """A condition worth a human's attention: opened once, updated while it lasts, resolved when it clears."""

    class Kind(models.TextChoices):
        BUDGET_OVERSPEND = "budget_overspend", "Budget overspend (today)"
        PACING_OVERSPEND = "pacing_overspend", "Budget overspend (month-to-date pacing)"
        API_FAILURES = "api_failures", "Platform API failures"
        WEBHOOK_DELAY = "webhook_delay", "Webhook delay"
        # Watched by the alert monitor (optimization/alerts.py), a process apart from the worker.
        WORKERS_STALLED = "workers_stalled", "Workers not taking tasks"
        BEAT_STALLED = "beat_stalled", "Scheduler (beat) not running"
        MONITOR_STALLED = "monitor_stalled", "Alert monitor not running"
        # Opened by the connections app when a platform refuses a login's credentials.
        CONNECTION = "connection", "Connection needs reconnecting"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.CharField(max_length=128, help_text="What it is about: campaign:<id>, platform:<name>, …")
    subject_label = models.CharField(max_length=255, blank=True)
    # Set on budget alerts: an evaluation after one account's sync resolves only that account's.
    account = models.ForeignKey(AdAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    value = models.FloatField()
    threshold = models.FloatField()
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    open_notified_at = models.DateTimeField(null=True, blank=True)
    resolve_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-opened_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("kind", "subject"), condition=Q(resolved_at__isnull=True), name="uniq_open_alert_kind_subject"
            ),
        ]
        indexes = [models.Index(fields=("kind", "resolved_at"))]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.get_kind_display()} · {self.subject_label or self.subject} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class PlatformCallRecord(models.Model):
    """One call to an ad platform and how it ended; the API failure alert counts these."""

    platform = models.CharField(max_length=16)
    operation = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, help_text="ok | rate_limited | transient | auth | permanent | error")
    error_code = models.CharField(max_length=128, blank=True)
    seconds = models.FloatField()
    called_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ("-called_at",)
        indexes = [models.Index(fields=("platform", "called_at"))]

    def __str__(self) -> str:
        return f"{self.platform}.{self.operation} {self.outcome}"


# --- Alert delivery and the processes the alert monitor watches ----------------------------------


class AlertSettings(models.Model):
    """Where alerts go, set in admin (one row). A blank field falls back to the environment
    (ALERT_EMAIL_RECIPIENTS, ALERT_SLACK_WEBHOOK_URL): the environment is the default, never a
    value written over what admin set, so the two cannot fight."""

    SINGLETON_ID = 1

    email_recipients = models.TextField(
        blank=True,
        help_text="One address per line (or comma-separated). Blank: ALERT_EMAIL_RECIPIENTS from the environment.",
    )
    email_enabled = models.BooleanField(default=True, help_text="Untick to send no alert email at all.")
    # A Slack incoming-webhook URL is a credential: encrypted at rest, never shown back in full.
    slack_webhook_url = EncryptedURLField(
        max_length=500,
        blank=True,
        help_text="Slack-compatible incoming webhook. Blank: ALERT_SLACK_WEBHOOK_URL from the environment.",
    )
    slack_enabled = models.BooleanField(default=True, help_text="Untick to post no alert to Slack at all.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by_name = models.CharField(max_length=150, blank=True, editable=False)

    class Meta:
        verbose_name = "alert destinations"
        verbose_name_plural = "alert destinations"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="alert_settings_singleton")]

    def __str__(self) -> str:
        return "Alert destinations"


class AlertNotification(models.Model):
    """One message owed about one alert (opened or resolved) on one channel: sent once, or retried
    with its last error on show. The alert is marked notified only once every channel has sent."""

    class Event(models.TextChoices):
        OPENED = "opened", "Opened"
        RESOLVED = "resolved", "Resolved"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (retried)"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=Event.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("alert", "event", "channel"), name="uniq_alert_notification"),
        ]
        indexes = [models.Index(fields=("status", "next_attempt_at"))]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} · {self.get_event_display()} · {self.alert} ({self.status})"


class ProcessHeartbeat(models.Model):
    """The last sign of life of a process the alert monitor watches, written where every machine
    can read it (the database, not a file): beat's scheduler loop, the monitor's own cycle, and
    the worker canary (a task the monitor queues and a worker runs)."""

    BEAT = "beat"
    MONITOR = "monitor"
    WORKER_CANARY = "worker-canary"

    name = models.CharField(max_length=32, unique=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the process last started.")
    beat_at = models.DateTimeField(null=True, blank=True, help_text="Its last sign of life (canary: last one run).")
    # Canary only: the last one queued, and the oldest queued that no worker has run yet.
    canary_sent_at = models.DateTimeField(null=True, blank=True)
    canary_pending_since = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}" if self.beat_at else self.name
