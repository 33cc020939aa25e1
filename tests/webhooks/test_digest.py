"""The low-priority digest: the CRM gets a low lead at once; email and Slack get one message per interval."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from adsplatform.celery import app as celery_app
from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json, take_published_tasks
from webhooks import services, tasks
from webhooks.models import Destination, Lead, LeadDelivery, RoutingRule
from webhooks.services import deliveries

Status = LeadDelivery.Status


@pytest.fixture
def slack_destination(db, crm_receiver) -> Destination:
    """A Slack-compatible channel on the same loopback receiver as the CRM, under its own path."""
    return Destination.objects.create(
        name="Slack #leads", kind=Destination.Kind.SLACK, url=crm_receiver.url.replace("/leads", "/slack")
    )


@pytest.fixture
def rules(db, crm_destination, email_destination, slack_destination) -> None:
    """Big budgets are urgent, a partner domain is high, everyone else is low; all go everywhere."""
    everywhere = (crm_destination, email_destination, slack_destination)
    for name, position, priority, conditions in (
        ("Big budget", 10, "urgent", [{"field": "answers.budget", "op": "gte", "value": 10000}]),
        ("Partner", 20, "high", [{"field": "email_domain", "op": "equals", "value": "partner.io"}]),
        ("Everyone else", 1000, "low", []),
    ):
        rule = RoutingRule.objects.create(name=name, position=position, priority=priority, conditions=conditions)
        rule.destinations.set(everywhere)
    services.routing_rules_invalidate()


@pytest.fixture
def enqueued():
    """Ids of the deliveries published to go out at once, read back from the in-memory broker."""
    seen: list[int] = []

    def published_delivery_ids() -> list[int]:
        seen.extend(task.args[0] for task in take_published_tasks() if task.name == tasks.deliver_lead.name)
        return list(seen)

    return published_delivery_ids


@pytest.fixture
def receive(api_client, relay_source, rules, enqueued, django_capture_on_commit_callbacks):
    """Post a lead to the Make.com receiver and process it as the worker does."""

    def _receive(lead_id: str, **fields: str) -> Lead:
        with django_capture_on_commit_callbacks(execute=True):
            response = post_json(
                api_client,
                "/api/v1/webhooks/zapier",
                flat_payload(lead_id=lead_id, **fields),
                **{"X-Webhook-Secret": RELAY_SECRET},
            )
            assert response.status_code == 202, response.content
            return services.webhook_event_process(event_id=response.json()["id"])

    return _receive


def low_lead(receive, n: int, **fields: str) -> Lead:
    lead = receive(f"low-{n}", budget="500", email=f"person{n}@elsewhere.net", phone=f"+1650555010{n}", **fields)
    assert lead.priority == "low"
    return lead


def by_kind(lead: Lead) -> dict[str, LeadDelivery]:
    return {d.destination.kind: d for d in lead.deliveries.select_related("destination")}


def slack_texts(crm_receiver) -> list[str]:
    return [json.loads(r["body"])["text"] for r in crm_receiver.requests if r["path"] == "/slack"]


def test_low_lead_reaches_the_crm_at_once_while_email_and_slack_wait(receive, enqueued, crm_receiver):
    lead = low_lead(receive, 1)
    deliveries = by_kind(lead)
    assert enqueued() == [deliveries["crm"].pk]
    for pk in enqueued():
        tasks.deliver_lead.apply(args=[pk])

    deliveries = by_kind(lead)
    assert deliveries["crm"].status == Status.DELIVERED
    assert [r["path"] for r in crm_receiver.requests] == ["/leads"]
    assert json.loads(crm_receiver.requests[0]["body"])["priority"] == "low"
    for kind in ("email", "slack"):
        assert (deliveries[kind].status, deliveries[kind].attempts) == (Status.AWAITING_DIGEST, 0)
    assert mail.outbox == []
    # The backlog sweeper does not mistake the waiting rows for lost single sends.
    assert services.webhook_backlog_sweep(older_than_seconds=0).deliveries == 0


def test_low_test_lead_still_never_reaches_the_crm(receive, enqueued):
    lead = low_lead(receive, 1, is_test="true")
    assert lead.is_test
    assert {kind: d.status for kind, d in by_kind(lead).items()} == {
        "email": Status.AWAITING_DIGEST,
        "slack": Status.AWAITING_DIGEST,
    }
    assert enqueued() == []


def test_one_email_and_one_slack_message_list_every_waiting_lead(receive, crm_receiver):
    leads = [low_lead(receive, n) for n in range(1, 4)]

    tasks.send_lead_digests.apply().get()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["sales@example.com", "oncall@example.com"]
    assert message.subject == "[Low] Lead digest: 3 new low-priority leads"
    for n, lead in enumerate(leads, start=1):
        assert f"Lead #{lead.pk}\n" in message.body
        assert f"+1650555010{n}" in message.body
    # Oldest first.
    assert message.body.index(f"Lead #{leads[0].pk}") < message.body.index(f"Lead #{leads[2].pk}")

    [text] = slack_texts(crm_receiver)
    assert text.startswith("*Lead digest: 3 new low-priority leads*")
    assert all(f"*Lead #{lead.pk}*" in text for lead in leads)

    for lead in leads:
        deliveries = by_kind(lead)
        email, slack = deliveries["email"], deliveries["slack"]
        assert (email.status, email.attempts, email.response_code, email.last_error) == (Status.DELIVERED, 1, 250, "")
        assert (slack.status, slack.attempts, slack.response_code, slack.last_error) == (Status.DELIVERED, 1, 200, "")
        assert email.delivered_at is not None and slack.delivered_at is not None
        assert (email.lease_expires_at, slack.lease_expires_at) == (None, None)


def test_a_second_run_sends_nothing_and_a_new_lead_goes_in_the_next_digest(receive, crm_receiver):
    first = low_lead(receive, 1)
    services.lead_digests_send()
    assert services.lead_digests_send() == []
    assert (len(mail.outbox), len(slack_texts(crm_receiver))) == (1, 1)

    later = low_lead(receive, 2)
    results = services.lead_digests_send()
    assert [(r.leads, r.sent) for r in results] == [(1, True), (1, True)]
    assert mail.outbox[1].subject == "[Low] Lead digest: 1 new low-priority lead"
    assert f"Lead #{later.pk}" in mail.outbox[1].body
    assert f"Lead #{first.pk}" not in mail.outbox[1].body
    assert f"Lead #{first.pk}" not in slack_texts(crm_receiver)[1]


def test_urgent_and_high_leads_go_out_at_once_and_never_in_a_digest(receive, enqueued, crm_receiver):
    urgent = receive("urgent-1", budget="50000", email="big@elsewhere.net")
    high = receive("high-1", budget="500", email="someone@partner.io")
    assert (urgent.priority, high.priority) == ("urgent", "high")
    assert sorted(enqueued()) == sorted(d.pk for lead in (urgent, high) for d in lead.deliveries.all())
    assert len(enqueued()) == 6
    for pk in enqueued():
        tasks.deliver_lead.apply(args=[pk])

    assert set(LeadDelivery.objects.values_list("status", flat=True)) == {Status.DELIVERED}
    assert sorted(m.subject for m in mail.outbox) == [f"[High] New lead #{high.pk}", f"[Urgent] New lead #{urgent.pk}"]
    assert services.lead_digests_send() == []
    assert len(mail.outbox) == 2
    assert not any(text.startswith("*Lead digest") for text in slack_texts(crm_receiver))


def test_a_failing_slack_digest_leaves_its_leads_waiting_with_the_error(receive, crm_receiver):
    leads = [low_lead(receive, n) for n in (1, 2)]
    crm_receiver.script = [503]

    results = {r.destination_id: r for r in services.lead_digests_send()}

    slack_id = Destination.objects.get(kind="slack").pk
    assert (results[slack_id].sent, results[slack_id].error) == (False, "HTTP 503")
    for lead in leads:
        slack = by_kind(lead)["slack"]
        assert (slack.status, slack.response_code, slack.last_error, slack.attempts) == (
            Status.AWAITING_DIGEST,
            503,
            "HTTP 503",
            1,
        )
        assert slack.lease_expires_at is None and slack.delivered_at is None
        assert by_kind(lead)["email"].status == Status.DELIVERED  # the email digest went out regardless

    # The next interval retries Slack alone, with both leads in one message.
    services.lead_digests_send()
    texts = slack_texts(crm_receiver)
    assert len(texts) == 2
    assert all(f"*Lead #{lead.pk}*" in texts[1] for lead in leads)
    assert len(mail.outbox) == 1
    for lead in leads:
        slack = by_kind(lead)["slack"]
        assert (slack.status, slack.response_code, slack.last_error, slack.attempts) == (
            Status.DELIVERED,
            200,
            "",
            2,
        )


def test_the_digest_is_capped_and_the_rest_goes_in_the_next_one(receive):
    leads = [low_lead(receive, n) for n in range(1, 4)]

    services.lead_digests_send(limit=2)
    assert mail.outbox[0].subject == "[Low] Lead digest: 2 new low-priority leads"
    assert [by_kind(lead)["email"].status for lead in leads] == [
        Status.DELIVERED,
        Status.DELIVERED,
        Status.AWAITING_DIGEST,
    ]

    services.lead_digests_send(limit=2)
    assert mail.outbox[1].subject == "[Low] Lead digest: 1 new low-priority lead"
    assert f"Lead #{leads[2].pk}\n" in mail.outbox[1].body
    assert by_kind(leads[2])["email"].status == Status.DELIVERED


def test_slack_digest_stays_within_slacks_message_size(receive, crm_receiver, monkeypatch):
    monkeypatch.setitem(deliveries._DIGEST_TEXT_LIMITS, Destination.Kind.SLACK, 250)
    leads = [low_lead(receive, n) for n in range(1, 4)]

    services.lead_digests_send()

    [text] = slack_texts(crm_receiver)
    listed = [lead for lead in leads if f"*Lead #{lead.pk}*" in text]
    assert 1 <= len(listed) < 3
    assert text.startswith(f"*Lead digest: {len(listed)} new low-priority lead")
    assert mail.outbox[0].subject == "[Low] Lead digest: 3 new low-priority leads"  # email has no such limit
    assert by_kind(leads[2])["slack"].status == Status.AWAITING_DIGEST


def test_a_digest_cut_off_by_a_dead_worker_is_failed_not_sent_again(receive, crm_receiver, enqueued):
    lead = low_lead(receive, 1)
    waiting = lead.deliveries.filter(status=Status.AWAITING_DIGEST)
    # A worker claimed the rows and died between the send and the bookkeeping.
    waiting.update(status=Status.DIGEST_SENDING, attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert services.lead_digests_send() == []
    assert (mail.outbox, slack_texts(crm_receiver)) == ([], [])
    for kind in ("email", "slack"):
        delivery = by_kind(lead)[kind]
        assert delivery.status == Status.FAILED
        assert delivery.last_error.startswith("Digest outcome unknown")

    # An operator who checked the channel retries: the leads go back into the digest, not out one by one.
    sent_at_once = enqueued()
    assert services.lead_deliveries_retry(lead=lead) == 2
    assert enqueued() == sent_at_once
    assert {d.status for d in by_kind(lead).values() if d.destination.kind != "crm"} == {Status.AWAITING_DIGEST}
    services.lead_digests_send()
    assert len(mail.outbox) == 1 and len(slack_texts(crm_receiver)) == 1


def test_a_live_claim_is_left_to_its_worker(receive, crm_receiver):
    lead = low_lead(receive, 1)
    lead.deliveries.filter(status=Status.AWAITING_DIGEST).update(
        status=Status.DIGEST_SENDING, attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert services.lead_digests_send() == []
    assert {by_kind(lead)[kind].status for kind in ("email", "slack")} == {Status.DIGEST_SENDING}
    assert (mail.outbox, slack_texts(crm_receiver)) == ([], [])


def test_rows_another_worker_holds_are_skipped_not_sent_twice(transactional_db, receive, crm_receiver):
    held_lead, free_lead = low_lead(receive, 1), low_lead(receive, 2)
    held = by_kind(held_lead)["slack"]
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        # Another digest run, mid-claim: it holds the row's lock in its open transaction.
        try:
            with transaction.atomic():
                list(LeadDelivery.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        services.lead_digests_send()
    finally:
        release.set()
        thread.join()

    [text] = slack_texts(crm_receiver)
    assert f"*Lead #{free_lead.pk}*" in text
    assert f"*Lead #{held_lead.pk}*" not in text
    held.refresh_from_db()
    assert (held.status, held.attempts) == (Status.AWAITING_DIGEST, 0)
    assert f"Lead #{held_lead.pk}\n" in mail.outbox[0].body  # the email row was not held

    services.lead_digests_send()
    texts = slack_texts(crm_receiver)
    assert len(texts) == 2
    assert f"*Lead #{held_lead.pk}*" in texts[1] and f"*Lead #{free_lead.pk}*" not in texts[1]


def test_an_inactive_destination_fails_its_waiting_leads(receive, crm_receiver, slack_destination):
    lead = low_lead(receive, 1)
    slack_destination.is_active = False
    slack_destination.save()

    services.lead_digests_send()

    slack = by_kind(lead)["slack"]
    assert (slack.status, slack.last_error) == (Status.FAILED, "Destination is inactive.")
    assert slack_texts(crm_receiver) == []
    assert by_kind(lead)["email"].status == Status.DELIVERED


def test_beat_runs_the_digest_every_interval(settings):
    entry = celery_app.conf.beat_schedule["webhooks-send-lead-digests"]
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == float(settings.LEAD_DIGEST_INTERVAL_SECONDS)
    assert entry["options"]["expires"] < entry["schedule"]


def test_admin_shows_deliveries_awaiting_the_digest(client, staff_user, receive):
    lead = low_lead(receive, 1)
    client.force_login(staff_user)
    page = client.get(f"/admin/webhooks/lead/{lead.pk}/change/").content.decode()
    assert page.count("Awaiting digest") == 2


@pytest.mark.clock("2026-11-01T05:20:00+00:00")
def test_the_digest_runs_by_the_clock_not_the_calendar_across_a_daylight_saving_change(receive, crm_receiver, clock):
    """New York's 01:20 comes twice on 1 November: the digest's claims and its order are UTC
    instants, so the lead of the second 01:20 goes in the next digest and nothing is listed twice."""
    first = low_lead(receive, 1)
    assert [(r.leads, r.sent) for r in services.lead_digests_send()] == [(1, True), (1, True)]

    clock.move_to("2026-11-01T06:20:00+00:00")  # the second 01:20 in New York
    second = low_lead(receive, 2)
    assert [(r.leads, r.sent) for r in services.lead_digests_send()] == [(1, True), (1, True)]
    assert f"Lead #{first.pk}" not in mail.outbox[1].body and f"Lead #{second.pk}" in mail.outbox[1].body
    assert first.received_at < second.received_at
