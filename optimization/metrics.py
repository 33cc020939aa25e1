"""Alert and budget gauges read from the database at scrape time: right whichever process did the work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from optimization import selectors
from optimization.alert_metrics import AlertMonitorCollector
from optimization.conf import setting
from optimization.models import Alert, OptimizationRun


class OptimizationCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_alerts = GaugeMetricFamily(
            "ads_alerts_open", "Open alerts by kind and severity.", labels=["kind", "severity"]
        )
        counts = selectors.open_alert_counts()
        for kind in Alert.Kind.values:
            for severity in Alert.Severity.values:
                open_alerts.add_metric([kind, severity], counts.get((kind, severity), 0))
        yield open_alerts

        window = setting("ALERT_API_WINDOW_MINUTES")
        error_rate = GaugeMetricFamily(
            "ads_platform_error_rate",
            f"Share of calls to each ad platform that failed in the last {window} minutes.",
            labels=["platform"],
        )
        calls = GaugeMetricFamily(
            "ads_platform_recent_calls", f"Calls to each ad platform in the last {window} minutes.", labels=["platform"]
        )
        stats = {s.platform: s for s in selectors.platform_call_stats(since=timezone.now() - timedelta(minutes=window))}
        for platform in sorted({"google", "meta", *stats}):
            row = stats.get(platform)
            error_rate.add_metric([platform], row.error_rate if row else 0.0)
            calls.add_metric([platform], row.calls if row else 0)
        yield error_rate
        yield calls

        pending = GaugeMetricFamily(
            "ads_budget_changes_waiting", "Budget changes not yet decided, by status.", labels=["status"]
        )
        for status in (OptimizationRun.Status.PROPOSED, OptimizationRun.Status.PENDING):
            pending.add_metric([status], OptimizationRun.objects.filter(status=status).count())
        yield pending


# The gauges of the alerting rules (monitor, canary, beat, notifications): their own module.
SCRAPE_COLLECTORS = (OptimizationCollector, AlertMonitorCollector)
