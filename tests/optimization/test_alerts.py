"""Each alert opens once, deduplicates, resolves when its condition clears, and notifies once each way."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import DailyMetric
from campaigns.services import account_today
from optimization import alerts
from optimization.models import Alert, PlatformCallRecord
from platforms.observe import record
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, SyncRunFactory
from tests.webhooks.factories import LeadFactory, WebhookEventFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


class SlackReceiver:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.url = ""


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    """A Slack-compatible incoming webhook on a free port, recording what it is sent."""
    receiver = SlackReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            receiver.messages.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    yield receiver
    server.shutdown()


@pytest.fixture
def notify(settings, slack: SlackReceiver, mailoutbox) -> tuple[SlackReceiver, list]:
    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    settings.ALERT_SLACK_WEBHOOK_URL = slack.url
    return slack, mailoutbox


def set_spend(campaign, day, cost_micros: int) -> None:
    DailyMetric.objects.update_or_create(campaign=campaign, date=day, defaults={"cost_micros": cost_micros})


def test_daily_overspend_opens_once_dedupes_resolves_and_notifies_once_each_way(notify):
    slack, mails = notify
    campaign = CampaignFactory(name="Brand", daily_budget_micros=100_000_000)
    today = account_today(campaign.account)
    set_spend(campaign, today, 120_000_000)

    alerts.alerts_evaluate()
    alerts.alerts_evaluate()

    alert = Alert.objects.get(kind=Alert.Kind.BUDGET_OVERSPEND)
    assert alert.is_open and alert.subject == f"campaign:{campaign.pk}"
    assert (alert.value, alert.threshold) == (1.2, 1.1)
    assert "Daily overspend" in alert.message and "120.00 USD today" in alert.message
    assert len(mails) == 1 and "Budget overspend (today): Brand" in mails[0].subject
    assert len(slack.messages) == 1 and "Brand" in slack.messages[0]["text"]

    set_spend(campaign, today, 130_000_000)
    alerts.alerts_evaluate()
    alert.refresh_from_db()
    assert alert.value == 1.3 and Alert.objects.count() == 1 and len(mails) == 1

    set_spend(campaign, today, 100_000_000)
    alerts.alerts_evaluate()
    alerts.alerts_evaluate()

    alert.refresh_from_db()
    assert not alert.is_open
    assert len(mails) == 2 and mails[1].subject.startswith("[RESOLVED]")
    assert len(slack.messages) == 2 and "RESOLVED" in slack.messages[1]["text"]
    assert not Alert.objects.filter(kind=Alert.Kind.PACING_OVERSPEND).exists()


def test_monthly_pacing_overspend_fires_when_each_day_stays_under_110_percent(notify):
    _, mails = notify
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    today = account_today(campaign.account)
    for day in range(1, today.day + 1):
        set_spend(campaign, today.replace(day=day), 105_000_000)  # 105% a day: no daily alert

    alerts.alerts_evaluate()

    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.PACING_OVERSPEND
    assert alert.message.startswith("Monthly pacing overspend")
    assert f"{today.day} days × 100.00 USD" in alert.message
    assert len(mails) == 1


def test_a_reopened_condition_is_a_new_alert(notify):
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    today = account_today(campaign.account)
    for spend in (150_000_000, 50_000_000, 150_000_000):
        set_spend(campaign, today, spend)
        alerts.alerts_evaluate()
    assert Alert.objects.filter(kind=Alert.Kind.BUDGET_OVERSPEND).count() == 2
    assert Alert.objects.filter(kind=Alert.Kind.BUDGET_OVERSPEND, resolved_at__isnull=True).count() == 1


def test_budget_alerts_are_evaluated_after_each_sync(notify, eager_tasks, django_capture_on_commit_callbacks):
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    set_spend(campaign, account_today(campaign.account), 150_000_000)

    with django_capture_on_commit_callbacks(execute=True):
        SyncRunFactory(account=campaign.account, succeeded=True)

    assert Alert.objects.filter(kind=Alert.Kind.BUDGET_OVERSPEND, subject=f"campaign:{campaign.pk}").exists()


def test_an_evaluation_after_one_sync_leaves_other_accounts_alerts_alone(notify):
    first = CampaignFactory(daily_budget_micros=100_000_000)
    other = CampaignFactory(account=AdAccountFactory(), daily_budget_micros=100_000_000)
    set_spend(first, account_today(first.account), 150_000_000)
    set_spend(other, account_today(other.account), 150_000_000)
    alerts.alerts_evaluate()
    set_spend(other, account_today(other.account), 0)

    alerts.budget_alerts_evaluate(accounts=[first.account])

    assert Alert.objects.filter(resolved_at__isnull=True).count() == 2


def calls(platform: str, ok: int, failed: int) -> None:
    """Calls reported the way the observed adapters report them (the app's listener records them)."""
    from platforms.base import TransientError

    started = 0.0
    for _ in range(ok):
        record(platform, "list_campaigns", started, None)
    for _ in range(failed):
        record(platform, "update_daily_budget", started, TransientError("unavailable", platform=platform, code="X"))


def test_api_failure_rate_above_5_percent_over_15_minutes(notify):
    slack, mails = notify
    calls("google", ok=19, failed=1)  # exactly 5%: not above
    calls("meta", ok=18, failed=2)  # 10%
    assert PlatformCallRecord.objects.count() == 40

    alerts.alerts_evaluate()
    alerts.alerts_evaluate()

    alert = Alert.objects.get()
    assert (alert.kind, alert.subject, alert.value) == (Alert.Kind.API_FAILURES, "platform:meta", 0.1)
    assert "2 of 20 calls failed in the last 15 minutes" in alert.message
    assert len(mails) == 1 and len(slack.messages) == 1

    alerts.alerts_evaluate(now=timezone.now() + timedelta(minutes=16))  # the failures aged out

    alert.refresh_from_db()
    assert not alert.is_open and len(mails) == 2


def test_a_handful_of_calls_is_not_a_rate(notify):
    calls("google", ok=1, failed=1)
    alerts.alerts_evaluate()
    assert not Alert.objects.exists()


def test_webhook_delay_from_the_oldest_unprocessed_event(notify):
    _, mails = notify
    event = WebhookEventFactory(received_at=timezone.now() - timedelta(minutes=6))
    alerts.alerts_evaluate()
    alerts.alerts_evaluate()
    alert = Alert.objects.get(subject="webhooks:inbox")
    assert alert.kind == Alert.Kind.WEBHOOK_DELAY and f"event #{event.pk}" in alert.message
    assert len(mails) == 1

    WebhookEvent.objects.filter(pk=event.pk).update(status="processed", processed_at=timezone.now())
    alerts.alerts_evaluate()
    alert.refresh_from_db()
    assert not alert.is_open and len(mails) == 2


def test_webhook_delay_from_a_slow_lead(notify):
    now = timezone.now()
    lead = LeadFactory(
        submitted_at=now - timedelta(minutes=9),
        received_at=now - timedelta(minutes=8),
        processed_at=now - timedelta(minutes=1),
    )
    alerts.alerts_evaluate()
    alert = Alert.objects.get(subject="webhooks:leads")
    assert f"lead #{lead.pk} took 8.0 minutes" in alert.message

    alerts.alerts_evaluate(now=now + timedelta(minutes=15))  # the slow lead left the window
    alert.refresh_from_db()
    assert not alert.is_open


def test_a_failed_notification_is_sent_at_the_next_evaluation_not_lost(settings, mailoutbox):
    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    settings.ALERT_SLACK_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    set_spend(campaign, account_today(campaign.account), 150_000_000)

    alerts.alerts_evaluate()
    assert Alert.objects.get().open_notified_at is None

    settings.ALERT_SLACK_WEBHOOK_URL = ""
    alerts.alerts_evaluate()
    assert Alert.objects.get().open_notified_at is not None


def test_alerts_api_lists_open_ones_first(auth_client, notify):
    campaign = CampaignFactory(name="Overspender", daily_budget_micros=100_000_000)
    set_spend(campaign, account_today(campaign.account), 150_000_000)
    alerts.alerts_evaluate()
    calls("meta", ok=10, failed=10)
    alerts.alerts_evaluate()

    body = auth_client.get("/api/v1/alerts/").json()

    assert body["count"] == 2
    assert {row["kind"] for row in body["results"]} == {"budget_overspend", "api_failures"}
    assert all(row["is_open"] for row in body["results"])
    assert auth_client.get("/api/v1/alerts/?state=resolved").json()["count"] == 0


def test_metrics_expose_open_alerts_and_platform_error_rate(client, notify):
    calls("meta", ok=10, failed=10)
    alerts.alerts_evaluate()

    text = client.get("/metrics").content.decode()

    assert 'ads_alerts_open{kind="api_failures",severity="critical"} 1.0' in text
    assert 'ads_platform_error_rate{platform="meta"} 0.5' in text


def test_alerts_opened_with_nowhere_to_send_stay_owed_until_a_destination_is_set(settings, mailoutbox):
    settings.ALERT_EMAIL_RECIPIENTS = []
    settings.ALERT_SLACK_WEBHOOK_URL = ""
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    set_spend(campaign, account_today(campaign.account), 150_000_000)

    alerts.alerts_evaluate()
    alert = Alert.objects.get()
    assert alert.is_open and alert.open_notified_at is None and mailoutbox == []

    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    alerts.alerts_evaluate()
    alert.refresh_from_db()
    assert alert.open_notified_at is not None and len(mailoutbox) == 1


@pytest.mark.parametrize(
    ("platform", "names", "never"),
    [("google", ["Google", "2×"], ["Meta"]), ("meta", ["Meta", "75%", "week"], ["Google", "2×"])],
)
def test_an_overspend_message_names_its_own_platforms_rule(notify, platform, names, never):
    account = AdAccountFactory(platform=platform)
    campaign = CampaignFactory(account=account, platform=platform, daily_budget_micros=100_000_000)
    set_spend(campaign, account_today(account), 150_000_000)

    alerts.alerts_evaluate()

    message = Alert.objects.get(kind=Alert.Kind.BUDGET_OVERSPEND).message
    assert all(name in message for name in names), message
    assert not any(word in message for word in never), message
