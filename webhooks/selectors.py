"""Reads of the webhook app that views and admin share."""

from __future__ import annotations

from django.db.models import Case, IntegerField, Prefetch, QuerySet, Value, When

from webhooks.models import PRIORITY_RANK, Lead, LeadDelivery


def lead_list() -> QuerySet[Lead]:
    """Leads with what the list shows, the urgent ones first, newest first within a priority."""
    rank = Case(
        *(When(priority=priority, then=Value(value)) for priority, value in PRIORITY_RANK.items()),
        default=Value(len(PRIORITY_RANK)),
        output_field=IntegerField(),
    )
    return (
        Lead.objects.select_related("source", "campaign", "matched_rule")
        .prefetch_related(
            Prefetch("deliveries", queryset=LeadDelivery.objects.select_related("destination").order_by("pk"))
        )
        .annotate(priority_rank=rank)
        .order_by("priority_rank", "-received_at", "-pk")
    )
