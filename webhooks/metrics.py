"""Webhook metrics: counters from the code path, and the inbox backlog read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhooks.models import LeadDelivery, WebhookEvent

# outcome: accepted, duplicate, unauthorized, invalid (at receipt); processed, failed (in the worker).
WEBHOOK_EVENTS = Counter(
    "ads_webhook_events",
    "Inbound webhook events by source and outcome.",
    ("source", "outcome"),
)

# From the lead's submission (or our receipt, when the sender gives no time) to processing.
WEBHOOK_LAG = Histogram(
    "ads_webhook_lag_seconds",
    "Seconds from lead submission to the lead being processed and routed.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)


class WebhookBacklogCollector(Collector):
    """Oldest unprocessed event and pending deliveries, true whichever process did the work."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        oldest = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).aggregate(oldest=Min("received_at"))[
            "oldest"
        ]
        age = GaugeMetricFamily(
            "ads_webhook_oldest_unprocessed_event_age_seconds",
            "Age of the oldest received but unprocessed webhook event (0 when none).",
        )
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age
        pending = GaugeMetricFamily(
            "ads_webhook_deliveries_pending",
            "Lead deliveries not yet delivered or finally failed.",
        )
        pending.add_metric(
            [],
            LeadDelivery.objects.filter(status__in=(LeadDelivery.Status.PENDING, LeadDelivery.Status.SENDING)).count(),
        )
        yield pending


SCRAPE_COLLECTORS = (WebhookBacklogCollector,)
