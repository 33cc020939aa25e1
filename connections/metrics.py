"""Connection health read from the database at scrape time, behind the Prometheus rule that
mirrors the app's "connection needs reconnecting" alert."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from campaigns.models import Platform
from connections.models import Connection


class ConnectionCollector:
    def collect(self):
        needing = GaugeMetricFamily(
            "ads_connections_needing_reconnect",
            "Connections whose credentials the platform refused or that expired (their accounts' syncs pause).",
            labels=["platform"],
        )
        counts = dict.fromkeys(Platform.values, 0)
        for platform in Connection.objects.filter(status=Connection.Status.NEEDS_RECONNECT).values_list(
            "platform", flat=True
        ):
            counts[platform] = counts.get(platform, 0) + 1
        for platform, count in counts.items():
            needing.add_metric([platform], count)
        yield needing


SCRAPE_COLLECTORS = (ConnectionCollector,)
