"""The alert monitor watches from outside the worker: with no worker consuming, a late webhook still
opens its alert and reaches the destination; workers that take no tasks and a beat that does not
run open alerts, which resolve when they come back; notifications that fail stay owed and shown.

The first tests run the real processes (``manage.py alert_monitor``, a Celery worker, beat) on a
Redis of their own and this test database, at the real time (the processes read the real clock;
the test moves its own to the database server's).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from campaigns.access import ADMIN, account_access_grant
from campaigns.models import DailyMetric
from campaigns.services import account_today
from optimization import alerts
from optimization.conf import setting
from optimization.models import Alert, AlertNotification, AlertSettings, ProcessHeartbeat
from optimization.tasks import evaluate_alerts, worker_canary
from tests.campaigns.factories import AdAccountFactory, CampaignFactory

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# --- Helpers: a Slack stand-in, a private Redis, subprocesses on the test database ----------------


class SlackReceiver:
    """A Slack-compatible incoming webhook on a free port: records what it is sent, or fails."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = 200
        handler = self._handler()
        self.server = HTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/s3cr3tpath"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status == 200:
                    receiver.messages.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"no_service")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    yield receiver
    receiver.server.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A redis-server of the test's own (nothing else consumes there), else the configured Redis."""
    if not shutil.which("redis-server"):
        if not settings.REDIS_URL:
            pytest.skip("needs redis-server or REDIS_URL")
        yield settings.REDIS_URL
        return
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10), "redis-server did not start"
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _until(condition: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return condition()


class Processes:
    """Platform processes started on the test database and broker; all stopped at the end."""

    def __init__(self, tmp_path: Path, broker: str, extra_env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": broker,
            "WORKER_HEARTBEAT_FILE": str(tmp_path / "worker-heartbeat"),
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            **extra_env,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str]) -> None:
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.running[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def monitor(self, *args: str) -> None:
        self.start("monitor", [sys.executable, str(ROOT / "manage.py"), "alert_monitor", *args])

    def worker(self) -> None:
        self.start(
            "worker",
            [str(BIN / "celery"), "-A", "adsplatform", "worker", "--pool", "solo", "--loglevel", "INFO"],
        )

    def beat(self) -> None:
        self.start(
            "beat",
            [
                *(str(BIN / "celery"), "-A", "adsplatform", "beat", "--loglevel", "INFO"),
                *("--schedule", str(self.tmp_path / "celerybeat-schedule")),
                *("--scheduler", "optimization.beat:HeartbeatScheduler"),
            ],
        )

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


@pytest.fixture
def real_time(clock):
    """This process's clock at the real instant (the database server's), like the subprocesses'."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        clock.move_to(cursor.fetchone()[0], tick=True)
    return clock


def _db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


# --- With the worker stopped, a late webhook reaches the destination -----------------------------


@pytest.mark.django_db(transaction=True)
def test_with_no_worker_a_late_webhook_opens_the_delay_alert_within_a_minute_and_reaches_slack(
    real_time, slack, broker_url, tmp_path
):
    from webhooks.models import WebhookEvent, WebhookSource

    # Destinations set in admin (the environment has none): email and a Slack-compatible URL.
    AlertSettings.objects.create(
        pk=AlertSettings.SINGLETON_ID, email_recipients="oncall@example.com", slack_webhook_url=slack.url
    )
    source = WebhookSource.objects.create(name="zapier-test", secret="s3cret")
    # Received 4 min 52 s ago: it crosses the 5-minute threshold 8 s from now, while the monitor runs.
    now = _db_now()
    event = WebhookEvent.objects.create(
        source=source, dedupe_key="msg:late", raw_body="{}", received_at=now - timedelta(minutes=4, seconds=52)
    )
    crossing = event.received_at + timedelta(seconds=setting("ALERT_WEBHOOK_DELAY_SECONDS"))

    # The monitor at its defaults (every 20 s); no worker, no beat; no destination in the environment.
    processes = Processes(tmp_path, broker_url, {"ALERT_EMAIL_RECIPIENTS": "", "ALERT_SLACK_WEBHOOK_URL": ""})
    processes.monitor()
    try:
        assert _until(lambda: slack.messages, 75, every=0.2), processes.log("monitor")
        reached_at = _db_now()
        alert = Alert.objects.get(kind=Alert.Kind.WEBHOOK_DELAY, subject="webhooks:inbox")
        email_out = _until(lambda: "oncall@example.com" in processes.log("monitor"), 10)
        # Marked notified once every channel has sent: the email may land after Slack's answer.
        _until(lambda: Alert.objects.filter(pk=alert.pk, open_notified_at__isnull=False).exists(), 10)
        alert.refresh_from_db()
    finally:
        processes.stop_all()

    assert alert.opened_at > crossing, "not before the threshold"
    assert (alert.opened_at - crossing).total_seconds() < 60
    assert (reached_at - crossing).total_seconds() < 60, (crossing, alert.opened_at, reached_at)
    assert len(slack.messages) == 1 and "Webhook delay" in slack.messages[0]["text"]
    assert f"event #{event.pk}" in slack.messages[0]["text"]
    assert email_out, "the email went out through Django's mail backend too (console here)"
    assert alert.open_notified_at is not None
    assert set(alert.notifications.values_list("channel", "status")) == {("email", "sent"), ("slack", "sent")}
    # Nothing consumed meanwhile: the event is still waiting, and so is the monitor's canary.
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert ProcessHeartbeat.objects.get(name=ProcessHeartbeat.WORKER_CANARY).canary_pending_since is not None


@pytest.mark.django_db(transaction=True)
def test_workers_not_taking_tasks_and_beat_not_running_open_and_resolve_with_the_real_processes(
    real_time, broker_url, tmp_path
):
    processes = Processes(
        tmp_path,
        broker_url,
        {
            "ALERT_MONITOR_INTERVAL_SECONDS": "1",
            "ALERT_WORKER_STALE_SECONDS": "4",
            "ALERT_CANARY_INTERVAL_SECONDS": "1",
            "ALERT_BEAT_STALE_SECONDS": "4",
        },
    )

    def open_alert(kind: str) -> Alert | None:
        return Alert.objects.filter(kind=kind, resolved_at__isnull=True).first()

    def resolved(kind: str) -> bool:
        return Alert.objects.filter(kind=kind, resolved_at__isnull=False).exists() and not open_alert(kind)

    processes.monitor()
    try:
        # No worker, no beat: the canary waits and beat never wrote a heartbeat.
        workers = _until(lambda: open_alert(Alert.Kind.WORKERS_STALLED), 40)
        beat = _until(lambda: open_alert(Alert.Kind.BEAT_STALLED), 10)
        assert workers and beat, processes.log("monitor")
        assert "Workers are not taking tasks" in workers.message
        assert "1 task(s) wait in the queue" in workers.message, workers.message  # the canary, and nothing took it
        assert "no heartbeat at all" in beat.message

        processes.beat()
        assert _until(lambda: resolved(Alert.Kind.BEAT_STALLED), 40), processes.log("beat")
        assert ProcessHeartbeat.objects.get(name=ProcessHeartbeat.BEAT).beat_at is not None
        processes.stop("beat")

        processes.worker()
        assert _until(lambda: resolved(Alert.Kind.WORKERS_STALLED), 60), processes.log("worker")
        canary = ProcessHeartbeat.objects.get(name=ProcessHeartbeat.WORKER_CANARY)
        assert canary.beat_at is not None and canary.details.get("worker")

        # Beat stopped again: its heartbeat ages and the alert opens anew.
        again = _until(lambda: open_alert(Alert.Kind.BEAT_STALLED), 30)
        assert again and "its last heartbeat was" in again.message
    finally:
        processes.stop_all()


# --- The same rules, in-process at the pinned clock ----------------------------------------------


@pytest.fixture
def slack_destination(settings, slack):
    settings.ALERT_EMAIL_RECIPIENTS = []
    settings.ALERT_SLACK_WEBHOOK_URL = slack.url
    return slack


@pytest.mark.django_db
def test_beat_heartbeat_ages_into_an_alert_that_resolves_when_beat_writes_again(clock, slack_destination):
    alerts.process_heartbeat(ProcessHeartbeat.MONITOR, started=True)
    alerts.process_alerts_evaluate()
    assert not Alert.objects.exists(), "a monitor that just started gives beat its grace"

    clock.shift(timedelta(seconds=181))
    alerts.process_heartbeat(ProcessHeartbeat.MONITOR)  # the monitor's cycle, as it runs
    alerts.alerts_evaluate()
    alert = Alert.objects.get(kind=Alert.Kind.BEAT_STALLED)
    assert alert.value > 180 and alert.threshold == 180

    alerts.process_heartbeat(ProcessHeartbeat.BEAT, started=True)
    alerts.alerts_evaluate()
    alert.refresh_from_db()
    assert not alert.is_open
    assert [m["text"].split("\n")[0] for m in slack_destination.messages] == [
        "*[WARNING] Scheduler (beat) not running: Celery beat*",
        "*[RESOLVED] Scheduler (beat) not running: Celery beat*",
    ]


@pytest.mark.django_db
def test_a_waiting_canary_opens_workers_not_taking_tasks_and_a_run_resolves_it(clock, slack_destination):
    sent = timezone.now()
    ProcessHeartbeat.objects.create(name=ProcessHeartbeat.WORKER_CANARY, canary_sent_at=sent, canary_pending_since=sent)
    clock.shift(timedelta(seconds=119))
    assert not alerts.process_alerts_evaluate().opened

    clock.shift(timedelta(seconds=2))
    opened = alerts.process_alerts_evaluate().opened
    assert [a.kind for a in opened] == [Alert.Kind.WORKERS_STALLED]

    worker_canary(sent_at=sent.isoformat())  # what a worker runs
    resolved = alerts.process_alerts_evaluate().resolved
    assert [a.kind for a in resolved] == [Alert.Kind.WORKERS_STALLED]


@pytest.mark.django_db
def test_a_second_monitor_waits_while_the_first_holds_the_lock(slack_destination):
    import psycopg

    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=150_000_000)
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [alerts.EVALUATION_LOCK_KEY])
        assert alerts.monitor_cycle() is None
        assert not Alert.objects.exists() and not slack_destination.messages
        other.execute("SELECT pg_advisory_unlock(%s)", [alerts.EVALUATION_LOCK_KEY])
    changes = alerts.monitor_cycle()
    assert [a.kind for a in changes.opened] == [Alert.Kind.BUDGET_OVERSPEND]
    assert len(slack_destination.messages) == 1


@pytest.mark.django_db
def test_the_worker_side_evaluation_stands_aside_while_the_monitor_runs_and_reports_it_when_it_stops(
    clock, slack_destination
):
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=150_000_000)
    alerts.process_heartbeat(ProcessHeartbeat.MONITOR, started=True)
    alerts.process_heartbeat(ProcessHeartbeat.BEAT, started=True)

    assert evaluate_alerts.run() == 0 and not Alert.objects.exists()

    clock.shift(timedelta(seconds=121))
    alerts.process_heartbeat(ProcessHeartbeat.BEAT)
    assert evaluate_alerts.run() == 2
    assert set(Alert.objects.values_list("kind", flat=True)) == {
        Alert.Kind.BUDGET_OVERSPEND,
        Alert.Kind.MONITOR_STALLED,
    }


# --- Notifications that cannot be sent stay owed, retried and shown ------------------------------


@pytest.mark.django_db
def test_a_slack_failure_is_recorded_retried_with_backoff_and_never_marked_notified(clock, settings, slack, caplog):
    settings.ALERT_EMAIL_RECIPIENTS = []
    settings.ALERT_SLACK_WEBHOOK_URL = slack.url
    slack.status = 500
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=150_000_000)

    alerts.alerts_evaluate()
    alert = Alert.objects.get()
    note = AlertNotification.objects.get(alert=alert)
    assert alert.open_notified_at is None
    assert (note.status, note.attempts) == (AlertNotification.Status.FAILED, 1)
    assert note.last_error.startswith("Slack answered HTTP 500")
    assert "s3cr3tpath" not in note.last_error and "s3cr3tpath" not in caplog.text

    alerts.alerts_evaluate()  # before the backoff: not tried again
    note.refresh_from_db()
    assert note.attempts == 1

    clock.shift(timedelta(seconds=31))
    alerts.alerts_evaluate()
    note.refresh_from_db()
    assert note.attempts == 2 and (note.next_attempt_at - timezone.now()).total_seconds() > 55  # doubled

    slack.status = 200
    clock.shift(timedelta(seconds=61))
    alerts.alerts_evaluate()
    note.refresh_from_db()
    alert.refresh_from_db()
    assert note.status == AlertNotification.Status.SENT and note.last_error == ""
    assert alert.open_notified_at is not None and len(slack.messages) == 1


@pytest.mark.django_db
def test_one_channel_failing_does_not_send_the_other_twice(settings, slack, mailoutbox):
    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    settings.ALERT_SLACK_WEBHOOK_URL = "http://127.0.0.1:9/services/unreachable"
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=150_000_000)
    alerts.alerts_evaluate()
    AlertNotification.objects.update(next_attempt_at=None)
    alerts.alerts_evaluate()
    assert len(mailoutbox) == 1
    slack_note = AlertNotification.objects.get(channel="slack")
    assert slack_note.attempts == 2 and "unreachable" not in slack_note.last_error
    assert Alert.objects.get().open_notified_at is None


# --- Destinations in admin ------------------------------------------------------------------------


@pytest.fixture
def every_account_admin(db, client):
    person = get_user_model().objects.create_user("ops-admin", password="x", is_staff=True)
    account_access_grant(user=person, account=None, role=ADMIN)
    client.force_login(person)
    return client


@pytest.mark.django_db
def test_admin_sets_destinations_over_the_environment_and_never_shows_the_slack_url(
    every_account_admin, settings, slack, mailoutbox
):
    settings.ALERT_EMAIL_RECIPIENTS = ["env-oncall@example.com"]
    settings.ALERT_SLACK_WEBHOOK_URL = ""
    client = every_account_admin

    page = client.get("/admin/optimization/alertsettings/", follow=True)
    assert page.status_code == 200
    assert "env-oncall@example.com" in page.content.decode() and "from the environment" in page.content.decode()
    assert alerts.alert_destinations().email_source == "environment"

    url = "/admin/optimization/alertsettings/1/change/"
    refused = client.post(url, {"email_recipients": "not-an-address", "email_enabled": "on", "slack_enabled": "on"})
    assert refused.status_code == 200 and "Not an email address: not-an-address" in refused.content.decode()

    saved = client.post(
        url,
        {
            "email_recipients": "a@example.com, b@example.com",
            "email_enabled": "on",
            "slack_webhook_url": slack.url,
            "slack_enabled": "on",
        },
    )
    assert saved.status_code == 302
    destinations = alerts.alert_destinations()
    assert destinations.email_recipients == ["a@example.com", "b@example.com"]
    assert (destinations.slack_url, destinations.slack_source) == (slack.url, "admin")
    with connection.cursor() as cursor:
        cursor.execute("SELECT slack_webhook_url FROM optimization_alertsettings")
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "s3cr3tpath" not in stored

    page = client.get(url).content.decode()
    assert "s3cr3tpath" not in page and f"127.0.0.1:{slack.server.server_address[1]}/…" in page

    # Saved again with the URL left blank: it stays. Cleared: the environment's (none) applies.
    client.post(url, {"email_recipients": "a@example.com", "email_enabled": "on", "slack_enabled": "on"})
    assert alerts.alert_destinations().slack_url == slack.url
    client.post(url, {"email_recipients": "", "clear_slack_webhook_url": "on", "slack_enabled": "on"})
    destinations = alerts.alert_destinations()
    assert destinations.slack_source == "none" and destinations.email_source == "off"


@pytest.mark.django_db
def test_unsent_notifications_are_shown_in_admin(every_account_admin, settings):
    settings.ALERT_EMAIL_RECIPIENTS = []
    settings.ALERT_SLACK_WEBHOOK_URL = "http://127.0.0.1:9/services/unreachable"
    campaign = CampaignFactory(name="Spender", daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=150_000_000)
    alerts.alerts_evaluate()

    page = every_account_admin.get("/admin/optimization/alertsettings/1/change/", follow=True).content.decode()
    assert "Spender" in page and "1 attempt(s)" in page and "ConnectionError" in page
    listing = every_account_admin.get("/admin/optimization/alertnotification/?status__exact=failed")
    assert listing.status_code == 200 and "Failed (retried)" in listing.content.decode()

    settings.ALERT_SLACK_WEBHOOK_URL = ""
    page = every_account_admin.get("/admin/optimization/alertsettings/1/change/").content.decode()
    assert "wait with nowhere to send" in page


@pytest.mark.django_db
def test_an_admin_of_one_account_cannot_open_or_change_the_destinations(client):
    person = get_user_model().objects.create_user("account-admin", password="x", is_staff=True)
    account_access_grant(user=person, account=AdAccountFactory(), role=ADMIN)
    client.force_login(person)
    assert client.get("/admin/optimization/alertsettings/").status_code == 403
    AlertSettings.objects.create(pk=AlertSettings.SINGLETON_ID)
    url = "/admin/optimization/alertsettings/1/change/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"email_recipients": "me@example.com"}).status_code == 403
    assert client.get("/admin/optimization/alertnotification/").status_code == 403
    assert AlertSettings.objects.get().email_recipients == ""
