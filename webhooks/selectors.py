"""Reads of the webhook app that views and admin share."""

from __future__ import annotations

from django.db.models import Case, IntegerField, Prefetch, QuerySet, Value, When

from webhooks.models import PRIORITY_RANK, Destination, Lead, LeadDelivery, RoutingRule


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
