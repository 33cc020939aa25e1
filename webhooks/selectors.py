"""Reads of the webhook app that views and admin share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When

from webhooks.models import PRIORITY_RANK, Destination, Lead, LeadDelivery, RoutingRule, WebhookEvent


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


def routing_gaps() -> list[str]:
    """What an operator must fix for every lead to reach someone, in words (the dashboard shows them)."""
    gaps = []
    rules = RoutingRule.objects.filter(is_active=True)
    if not rules.filter(conditions=[]).exists():
        gaps.append(
            "Leads that match no routing rule go nowhere: add an active rule without conditions (the default route)."
        )
    elif not rules.filter(conditions=[], destinations__is_active=True).exists():
        gaps.append("The default routing rule has no active destination: leads it catches go nowhere.")
    unreachable = Destination.objects.filter(is_active=True, kind=Destination.Kind.EMAIL, recipients="")
    gaps += [f"Email destination “{d.name}” has no recipients: its leads fail to send." for d in unreachable]
    return gaps


@dataclass(frozen=True)
class WebhookDelays:
    oldest_unprocessed_event_seconds: float
    oldest_unprocessed_event_id: int | None
    worst_lead_lag_seconds: float
    worst_lead_id: int | None


def webhook_delays(*, now: datetime, window: timedelta) -> WebhookDelays:
    """The oldest webhook event still waiting, and the slowest lead of the window (or still waiting):
    what the lead-delay alerts (optimization.alerts) watch."""
    oldest = (
        WebhookEvent.objects.filter(status="received").order_by("received_at").values_list("id", "received_at").first()
    )
    event_age, event_id = ((now - oldest[1]).total_seconds(), oldest[0]) if oldest else (0.0, None)

    worst_lag, worst_lead = 0.0, None
    leads = Lead.objects.filter(
        Q(processed_at__gte=now - window) | Q(processed_at__isnull=True, received_at__gte=now - timedelta(days=1))
    ).values_list("id", "submitted_at", "received_at", "processed_at")
    for lead_id, submitted_at, received_at, processed_at in leads:
        started = submitted_at or received_at
        # A sender's clock may run ahead of ours; a negative lag is no lag.
        lag = max(((processed_at or now) - started).total_seconds(), 0.0)
        if lag > worst_lag:
            worst_lag, worst_lead = lag, lead_id
    return WebhookDelays(event_age, event_id, worst_lag, worst_lead)
