"""Budget changes (the seed's optimization_runs): an append-only audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from campaigns.models import Campaign


class OptimizationRun(models.Model):
    """A change of one campaign's daily budget, from staff, the API or the optimizer."""

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

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="optimization_runs")
    old_budget_micros = models.BigIntegerField(null=True, blank=True)
    new_budget_micros = models.BigIntegerField()
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    platform_response = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("campaign", "-created_at")), models.Index(fields=("status",))]

    def __str__(self) -> str:
        return f"Budget change #{self.pk} of {self.campaign_id}: {self.old_budget_micros} → {self.new_budget_micros}"
