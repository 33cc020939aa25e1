"""Gauges behind the Prometheus alerting rules (deploy/prometheus/alerts.yml), read from the
database at scrape time by the same functions the alert monitor uses: Prometheus and the app
judge the same numbers against the same thresholds.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from campaigns.models import AdAccount
from campaigns.services import account_today
from optimization import alerts, selectors
from optimization.models import AlertNotification


class AlertMonitorCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()

        # Per account, the worst campaign: the overspend rule needs "any campaign above 110%",
        # and one series per account keeps the label count to the accounts, not the campaigns.
        daily = GaugeMetricFamily(
            "ads_budget_daily_spend_ratio_max",
            "Highest today's spend / daily budget among the account's enabled campaigns (account's own date).",
            labels=["account_id", "platform"],
        )
        monthly = GaugeMetricFamily(
            "ads_budget_month_spend_ratio_max",
            "Highest month-to-date spend / (days elapsed x daily budget) among the account's enabled campaigns "
            "(0 on the 1st).",
            labels=["account_id", "platform"],
        )
        for account in AdAccount.objects.filter(is_active=True).order_by("pk"):
            today = account_today(account)
            rows = selectors.campaign_spend_for_alerts(account=account, today=today)
            labels = [str(account.pk), account.platform]
            daily.add_metric(labels, max((r.spend_today_micros / r.daily_budget_micros for r in rows), default=0.0))
            # Judged from day 2, as the app's pacing alert: on day 1 it would restate the daily one.
            monthly.add_metric(
                labels,
                max((r.spend_month_micros / (today.day * r.daily_budget_micros) for r in rows), default=0.0)
                if today.day > 1
                else 0.0,
            )
        yield daily
        yield monthly

        canary = GaugeMetricFamily(
            "ads_worker_canary_waiting_seconds",
            "How long the alert monitor's canary task has waited for a worker to run it (0: none waits).",
        )
        canary.add_metric([], alerts.worker_canary_waiting_seconds(now=now))
        yield canary

        beat_age = alerts.beat_heartbeat_age_seconds(now=now)
        if beat_age is not None:
            beat = GaugeMetricFamily(
                "ads_beat_heartbeat_age_seconds", "Seconds since Celery beat's scheduler loop last wrote its heartbeat."
            )
            beat.add_metric([], beat_age)
            yield beat

        monitor_age = alerts.monitor_heartbeat_age_seconds(now=now)
        if monitor_age is not None:
            monitor = GaugeMetricFamily(
                "ads_alert_monitor_heartbeat_age_seconds", "Seconds since the alert monitor's last evaluation."
            )
            monitor.add_metric([], monitor_age)
            yield monitor

        waiting = GaugeMetricFamily(
            "ads_alert_notifications_waiting",
            "Alert events (opened or resolved) whose notification has not reached every destination yet.",
        )
        waiting.add_metric([], len(selectors.alerts_awaiting_notification()))
        yield waiting

        failed = GaugeMetricFamily(
            "ads_alert_notifications_failed",
            "Alert notifications whose last attempt failed (retried with backoff), by channel.",
            labels=["channel"],
        )
        for channel in AlertNotification.Channel.values:
            failed.add_metric(
                [channel],
                AlertNotification.objects.filter(channel=channel, status=AlertNotification.Status.FAILED).count(),
            )
        yield failed
