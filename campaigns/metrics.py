"""Sync metrics read from the database at scrape time: right whichever process ran the sync."""

from __future__ import annotations

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from campaigns.models import AdAccount, SyncRun


class SyncCollector:
    def collect(self):
        lag = GaugeMetricFamily(
            "ads_sync_lag_seconds",
            "Seconds since the account's last successful sync (-1 if never synced).",
            labels=["account", "platform"],
        )
        now = timezone.now()
        for account_id, platform, last in AdAccount.objects.filter(is_active=True).values_list(
            "id", "platform", "last_synced_at"
        ):
            lag.add_metric([str(account_id), platform], (now - last).total_seconds() if last else -1)
        yield lag

        runs = CounterMetricFamily("ads_sync_runs", "Sync runs by outcome.", labels=["outcome"])
        counts = dict.fromkeys(SyncRun.Status.values, 0)
        for status, count in _run_counts():
            counts[status] = count
        for status, count in counts.items():
            runs.add_metric([status], count)
        yield runs


def _run_counts():
    from django.db.models import Count

    return SyncRun.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n").order_by()


SCRAPE_COLLECTORS = (SyncCollector,)
