"""Ad accounts, their campaigns, daily metrics and the sync runs that fill them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Platform(models.TextChoices):
    GOOGLE = "google", "Google Ads"
    META = "meta", "Meta"


class AdAccount(models.Model):
    """One Google Ads customer or Meta ad account the platform keeps in sync."""

    platform = models.CharField(max_length=16, choices=Platform.choices)
    external_id = models.CharField(
        max_length=32, help_text="Google customer id (digits only) or Meta ad account id (without act_)."
    )
    name = models.CharField(max_length=255)
    currency_code = models.CharField(max_length=3, help_text="ISO 4217, as the platform reports it.")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA name; metric dates are in it.")
    manager_customer_id = models.CharField(
        max_length=32, blank=True, help_text="Google manager (login-customer-id) this account is reached through."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive accounts are not synced.")
    # The credentials the account is reached with (connections app); filled for every account.
    connection = models.ForeignKey(
        "connections.Connection", null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    initial_backfill_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days of metrics the first backfill reads; empty: INITIAL_BACKFILL_DAYS."
    )
    # Kept by the sync (campaigns.services): the earliest day a successful run read. Metrics of
    # earlier days were never read: they are "no data", not zero (see campaigns.coverage).
    data_from = models.DateField(
        null=True, blank=True, editable=False, help_text="First day with synced metrics; earlier days have no data."
    )
    sync_interval_minutes = models.PositiveIntegerField(default=15)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    needs_attention = models.BooleanField(
        default=False, help_text="Set when credentials or configuration failed; scheduled syncs pause until cleared."
    )
    attention_reason = models.TextField(blank=True)
    # The run holding this account's sync lease: one sync per account at a time, taken
    # with a conditional UPDATE so it works on every database and survives no restart
    # of a crashed worker beyond SYNC_LEASE_SECONDS.
    sync_lease_run_id = models.BigIntegerField(null=True, blank=True, editable=False)
    sync_lease_taken_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("platform", "name")
        constraints = [
            models.UniqueConstraint(fields=("platform", "external_id"), name="uniq_account_platform_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()} {self.external_id})"


class CampaignStatus(models.TextChoices):
    ENABLED = "enabled", "Enabled"
    PAUSED = "paused", "Paused"
    REMOVED = "removed", "Removed"


class BudgetLevel(models.TextChoices):
    CAMPAIGN = "campaign", "Campaign"
    AD_GROUP = "ad_group", "Ad groups / ad sets"


class Campaign(models.Model):
    """A campaign on either platform, with budgets in integer micros of the account currency."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="campaigns")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    external_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.ENABLED)
    budget_micros = models.BigIntegerField(null=True, blank=True, help_text="Lifetime budget, if any.")
    daily_budget_micros = models.BigIntegerField(null=True, blank=True)
    budget_external_id = models.CharField(
        max_length=64, blank=True, help_text="Google campaign budget id; empty on Meta."
    )
    budget_is_shared = models.BooleanField(default=False, help_text="A Google budget shared with other campaigns.")
    budget_level = models.CharField(
        max_length=16,
        choices=BudgetLevel.choices,
        default=BudgetLevel.CAMPAIGN,
        help_text="Where the budget lives: on the campaign (Google; Meta CBO) or on its ad sets (Meta ABO).",
    )
    budget_remaining_micros = models.BigIntegerField(
        null=True, blank=True, help_text="What is left of a lifetime budget, as the platform last reported it."
    )
    end_time = models.DateTimeField(null=True, blank=True, help_text="When a lifetime budget ends.")
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("platform", "external_id"), name="uniq_campaign_platform_external_id"),
        ]
        indexes = [
            models.Index(fields=("account", "status")),
            # The API's default order: a page is an index range, not a sort of every campaign.
            models.Index(fields=("name", "id"), name="campaign_name_id_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def currency_code(self) -> str:
        return self.account.currency_code


class DailyMetric(models.Model):
    """One campaign's numbers for one day, dated in the ad account's time zone."""

    # No index of its own: the unique (campaign, date) constraint leads with it and serves every
    # lookup by campaign; a second index only slowed the sync's bulk writes.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="daily_metrics", db_index=False)
    date = models.DateField()
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    # Attribution models report fractional conversions.
    conversions = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    conversion_value_micros = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("campaign", "date")
        constraints = [
            models.UniqueConstraint(fields=("campaign", "date"), name="uniq_metric_campaign_date"),
        ]
        indexes = [models.Index(fields=("date",))]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.date}"


class AdGroup(models.Model):
    """The level below a campaign: a Google ad group or a Meta ad set.

    Google ad groups hold no budget; a Meta ad set holds a daily or a lifetime budget when its
    campaign does not (ABO). ``account`` repeats the campaign's so that scoping and the sync's
    "which rows did this account lose" are one indexed filter.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="ad_groups")
    account = models.ForeignKey(AdAccount, on_delete=models.PROTECT, related_name="ad_groups")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    external_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.ENABLED)
    daily_budget_micros = models.BigIntegerField(null=True, blank=True)
    lifetime_budget_micros = models.BigIntegerField(null=True, blank=True)
    budget_remaining_micros = models.BigIntegerField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ad group / ad set"
        verbose_name_plural = "ad groups / ad sets"
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("platform", "external_id"), name="uniq_ad_group_platform_external_id"),
        ]
        indexes = [
            models.Index(fields=("campaign", "name"), name="ad_group_campaign_name_idx"),
            models.Index(fields=("account", "status"), name="ad_group_account_status_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def currency_code(self) -> str:
        return self.account.currency_code


class AdGroupDailyMetric(models.Model):
    """One ad group's numbers for one day. Campaign totals never read these rows: the
    platforms report the campaign level itself, so adding both would count spend twice."""

    # Indexed by the unique (ad group, date) constraint, as DailyMetric.campaign is.
    ad_group = models.ForeignKey(AdGroup, on_delete=models.CASCADE, related_name="daily_metrics", db_index=False)
    date = models.DateField()
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    conversions = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    conversion_value_micros = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("ad_group", "date")
        constraints = [
            models.UniqueConstraint(fields=("ad_group", "date"), name="uniq_metric_ad_group_date"),
        ]
        indexes = [models.Index(fields=("date",), name="ad_group_metric_date_idx")]

    def __str__(self) -> str:
        return f"{self.ad_group_id} {self.date}"


class SyncRun(models.Model):
    """One sync of one account: what it read, how long it took, and how it ended."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another sync was running)"

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Manual"
        BACKFILL = "backfill", "Backfill"

    account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    date_from = models.DateField(null=True, blank=True)
    date_to = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    campaigns_synced = models.PositiveIntegerField(default=0)
    ad_groups_synced = models.PositiveIntegerField(default=0)
    metric_rows_synced = models.PositiveIntegerField(default=0)
    ad_group_metric_rows_synced = models.PositiveIntegerField(default=0)
    progress = models.CharField(max_length=255, blank=True, help_text="What the running sync is doing now.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a retry is due.")
    error_class = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("account", "-created_at")), models.Index(fields=("status",))]

    def __str__(self) -> str:
        return f"Sync #{self.pk} of {self.account_id} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return round((end - self.started_at).total_seconds(), 3)


class AccountRole(models.TextChoices):
    """The three levels both platforms use themselves (Google Ads: Read only / Standard / Admin;
    Meta: Analyst / Advertiser / Admin)."""

    VIEWER = "viewer", "Viewer: reads"
    ADVERTISER = "advertiser", "Advertiser: budgets, status, proposals, lead stages, syncs, conversions"
    ADMIN = "admin", "Admin: also guardrails, routing, destinations, service keys and access"


class AccountAccess(models.Model):
    """A role on one ad account, or on every account (no account), for a user or for a group."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="account_access"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="account_access"
    )
    account = models.ForeignKey(
        AdAccount,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="access",
        help_text="Empty: every account, today's and future ones (and records tied to no account).",
    )
    role = models.CharField(max_length=16, choices=AccountRole.choices)
    granted_by = models.CharField(max_length=150, blank=True, help_text="Who granted it (kept if they are deleted).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "account access"
        verbose_name_plural = "account access"
        ordering = ("user__username", "group__name", "account__name")
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="account_access_user_xor_group",
            ),
            # One role per grantee and account (and one "every account" role): a second grant
            # changes the role instead of piling up rows that disagree.
            models.UniqueConstraint(
                fields=("user", "account"),
                condition=Q(user__isnull=False, account__isnull=False),
                name="uniq_account_access_user_account",
            ),
            models.UniqueConstraint(
                fields=("user",),
                condition=Q(user__isnull=False, account__isnull=True),
                name="uniq_account_access_user_all",
            ),
            models.UniqueConstraint(
                fields=("group", "account"),
                condition=Q(group__isnull=False, account__isnull=False),
                name="uniq_account_access_group_account",
            ),
            models.UniqueConstraint(
                fields=("group",),
                condition=Q(group__isnull=False, account__isnull=True),
                name="uniq_account_access_group_all",
            ),
        ]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user is not None else f"group {self.group.name if self.group else '?'}"
        where = self.account.name if self.account is not None else "every account"
        return f"{who}: {self.role} on {where}"
