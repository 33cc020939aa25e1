"""End to end through the emulators: ingest over HTTP, upload with the official SDKs, read the sandbox."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversions import services, tasks
from conversions.models import Conversion
from conversions.services import uploads
from tests.conversions.conftest import GOOGLE_CUSTOMER, GOOGLE_PURCHASE, google_conversion, meta_event, unique

GOOGLE_URL = "/api/v1/conversions/google"
META_URL = "/api/v1/conversions/meta"

pytestmark = pytest.mark.django_db


def google_copies(sandbox, order_id: str) -> int:
    return sum(1 for c in sandbox.google.state.conversions if c.order_id == order_id)


def google_upload_calls(sandbox) -> int:
    return sum(1 for c in sandbox.google.state.calls if c.method == "UploadClickConversions")


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Conversion.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_google_ingest_upload_uploaded_with_exactly_one_copy(service_client, actions, sandbox):
    body = google_conversion()
    assert service_client.post(GOOGLE_URL, body, format="json").status_code == 202
    summary = services.conversions_upload_pending()
    assert summary.requests == 1
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.UPLOADED
    assert conversion.uploaded_at is not None
    assert conversion.attempts == 1
    assert conversion.request_id  # the upload job id
    assert google_copies(sandbox, body["order_id"]) == 1
    stored = next(c for c in sandbox.google.state.conversions if c.order_id == body["order_id"])
    assert stored.gclid == body["gclid"]
    assert stored.customer_id == int(GOOGLE_CUSTOMER)
    assert stored.conversion_action_id == int(GOOGLE_PURCHASE)
    assert stored.hashed_emails == (conversion.hashed_email,)
    assert stored.conversion_value == pytest.approx(49.9)
    # The moment it happened, not when it was uploaded.
    sent = datetime.strptime(stored.conversion_date_time, "%Y-%m-%d %H:%M:%S%z")
    assert sent == datetime.fromisoformat(body["conversion_date_time"])
    assert (stored.ad_user_data_consent, stored.ad_personalization_consent) == ("GRANTED", "DENIED")
    # Running again sends nothing.
    assert services.conversions_upload_pending().requests == 0
    assert google_copies(sandbox, body["order_id"]) == 1


def test_duplicate_post_creates_nothing_and_uploads_once(service_client, actions, sandbox):
    body = google_conversion()
    service_client.post(GOOGLE_URL, body, format="json")
    services.conversions_upload_pending()
    again = service_client.post(GOOGLE_URL, body, format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "uploaded"
    assert Conversion.objects.count() == 1
    assert services.conversions_upload_pending().requests == 0
    assert google_copies(sandbox, body["order_id"]) == 1


def test_partial_failures_land_on_the_right_rows(service_client, actions, sandbox):
    good = [google_conversion() for _ in range(3)]
    unknown_click = google_conversion(gclid=unique("UNKNOWN"))
    other_customer = google_conversion()
    batch = [good[0], unknown_click, good[1], good[2]]
    service_client.post(GOOGLE_URL, {"conversions": batch}, format="json")
    # Already at Google (uploaded by someone else): "already exists" counts as uploaded.
    service_client.post(GOOGLE_URL, other_customer, format="json")
    sandbox_before = google_upload_calls(sandbox)
    summary = services.conversions_upload_pending()
    assert summary.requests == 1  # one account, one action: one request
    assert google_upload_calls(sandbox) - sandbox_before == 1
    by_order = {c.order_id: c for c in Conversion.objects.all()}
    rejected = by_order[unknown_click["order_id"]]
    assert rejected.status == Conversion.Status.REJECTED
    assert rejected.platform_code == "CLICK_NOT_FOUND"
    assert rejected.platform_message
    for body in [*good, other_customer]:
        assert by_order[body["order_id"]].status == Conversion.Status.UPLOADED
        assert google_copies(sandbox, body["order_id"]) == 1
    assert google_copies(sandbox, unknown_click["order_id"]) == 0


def test_already_at_google_counts_as_uploaded(service_client, actions, sandbox):
    body = google_conversion(order_id="")
    service_client.post(GOOGLE_URL, body, format="json")
    services.conversions_upload_pending()
    # The ledger loses the row (e.g. restored backup); the same click and time is sent again.
    Conversion.objects.update(status=Conversion.Status.PENDING, next_attempt_at=timezone.now())
    services.conversions_upload_pending()
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.UPLOADED
    assert conversion.platform_code == "already_exists"
    assert sum(1 for c in sandbox.google.state.conversions if c.gclid == body["gclid"]) == 1


def test_identifier_only_conversion_is_uploaded_as_an_enhanced_conversion_for_leads(service_client, actions, sandbox):
    body = google_conversion(gclid="", conversion_action="880000002", user={"email": "Jane.Doe@Gmail.com"})
    assert service_client.post(GOOGLE_URL, body, format="json").status_code == 202
    assert services.conversions_upload_pending().requests == 1
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.UPLOADED, conversion.platform_message
    (stored,) = [c for c in sandbox.google.state.conversions if c.order_id == body["order_id"]]
    assert (stored.gclid, stored.gbraid, stored.wbraid) == ("", "", "")
    # Google's normalization: trimmed, lower case, Gmail dots dropped, then SHA-256.
    assert stored.hashed_emails == (hashlib.sha256(b"janedoe@gmail.com").hexdigest(),)
    assert stored.hashed_phone_numbers == ()

    # Sent again (the ledger lost its status): Google already has this person, action and time.
    Conversion.objects.update(status=Conversion.Status.PENDING, next_attempt_at=timezone.now())
    services.conversions_upload_pending()
    assert Conversion.objects.get().status == Conversion.Status.UPLOADED
    assert google_copies(sandbox, body["order_id"]) == 1


def test_the_sandbox_refuses_a_conversion_with_neither_click_nor_identifiers(actions, sandbox):
    from platforms.base import ClickConversion
    from platforms.registry import get_platform

    row = ClickConversion(
        conversion_action_id="880000002",
        conversion_date_time=datetime.now(UTC).replace(microsecond=0),
        order_id=unique("order-"),
    )
    result = get_platform("google").upload_conversions(actions["google_lead"].account, [row])
    (outcome,) = result.outcomes
    assert (outcome.status, outcome.code) == ("rejected", "CLICK_NOT_FOUND")
    assert google_copies(sandbox, row.order_id) == 0


class SimulatedCrash(Exception):
    pass


def crash_once_after_the_platform_answered(monkeypatch):
    """The worker dies after the SDK returned and before the outcome is recorded."""
    real_record = uploads._record_upload_result
    calls = {"n": 0}

    def record(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SimulatedCrash("killed between send and record")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(uploads, "_record_upload_result", record)


def test_google_crash_after_the_remote_call_leaves_one_copy(service_client, actions, sandbox, monkeypatch, settings):
    bodies = [google_conversion(), google_conversion(order_id="")]
    service_client.post(GOOGLE_URL, {"conversions": bodies}, format="json")
    crash_once_after_the_platform_answered(monkeypatch)
    with pytest.raises(SimulatedCrash):
        services.conversions_upload_pending()
    # The claim was committed before the call: nothing is lost, nothing looks uploaded.
    assert statuses() == {"uploading": 2}
    assert google_copies(sandbox, bodies[0]["order_id"]) == 1
    # Within the lease nobody touches the rows.
    assert services.conversions_upload_pending().requests == 0
    # After the lease the rows are sent again; Google dedupes and the ledger says uploaded.
    later = timezone.now() + timedelta(seconds=services.upload_lease_seconds() + 1)
    summary = services.conversions_upload_pending(now=later)
    assert summary.requests == 1
    assert summary.outcomes["duplicate"] == 2
    assert statuses() == {"uploaded": 2}
    assert google_copies(sandbox, bodies[0]["order_id"]) == 1
    assert sum(1 for c in sandbox.google.state.conversions if c.gclid == bodies[1]["gclid"]) == 1
    assert set(Conversion.objects.values_list("attempts", flat=True)) == {2}


def test_meta_ingest_upload_and_crash_safety(service_client, actions, sandbox, monkeypatch):
    events = [meta_event(), meta_event(event_id="")]
    assert service_client.post(META_URL, {"events": events}, format="json").status_code == 202
    crash_once_after_the_platform_answered(monkeypatch)
    with pytest.raises(SimulatedCrash):
        services.conversions_upload_pending()
    later = timezone.now() + timedelta(seconds=services.upload_lease_seconds() + 1)
    services.conversions_upload_pending(now=later)
    assert statuses() == {"uploaded": 2}
    state = sandbox.meta.state
    for conversion in Conversion.objects.all():
        assert state.received_events[("Purchase", conversion.event_id)] == 2  # sent twice
        assert state.event_count("Purchase", conversion.event_id) == 1  # kept once
    stored = next(e for e in state.stored_events if e.get("event_id") == events[0]["event_id"])
    assert stored["user_data"]["em"] == ["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"]
    assert stored["custom_data"]["currency"] == "eur"
    assert stored["custom_data"]["value"] == pytest.approx(12.5)


def test_meta_events_past_seven_days_expire_before_sending(service_client, actions, sandbox):
    fresh, stale = meta_event(), meta_event()
    service_client.post(META_URL, {"events": [fresh, stale]}, format="json")
    # The stale one waited (e.g. behind an outage) until it turned 7 days old.
    Conversion.objects.filter(event_id=stale["event_id"]).update(
        occurred_at=timezone.now() - timedelta(days=7, hours=1)
    )
    summary = services.conversions_upload_pending()
    assert summary.outcomes["expired"] == 1
    assert Conversion.objects.get(event_id=stale["event_id"]).status == Conversion.Status.EXPIRED
    assert Conversion.objects.get(event_id=fresh["event_id"]).status == Conversion.Status.UPLOADED
    assert sandbox.meta.state.received_events[("Purchase", stale["event_id"])] == 0


def test_unavailable_backs_off_then_succeeds(service_client, actions, sandbox):
    body = google_conversion()
    service_client.post(GOOGLE_URL, body, format="json")
    sandbox.google.state.faults.unavailable = 1.0
    before = timezone.now()
    summary = services.conversions_upload_pending()
    assert summary.outcomes["retry"] == 1
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.PENDING
    assert conversion.attempts == 1
    assert conversion.last_error
    base = services.retry_base_seconds()
    assert (
        before + timedelta(seconds=base * 0.5) <= conversion.next_attempt_at <= timezone.now() + timedelta(seconds=base)
    )
    # Not due yet: nothing is sent.
    assert services.conversions_upload_pending().requests == 0
    sandbox.google.state.faults.reset()
    services.conversions_upload_pending(now=conversion.next_attempt_at + timedelta(seconds=1))
    assert Conversion.objects.get().status == Conversion.Status.UPLOADED
    assert google_copies(sandbox, body["order_id"]) == 1


def test_quota_errors_wait_for_the_platforms_delay(service_client, actions, sandbox, settings):
    settings.CONVERSIONS_RETRY_BASE_SECONDS = 1
    service_client.post(META_URL, meta_event(), format="json")
    sandbox.meta.state.faults.quota = 1.0
    sandbox.meta.state.faults.quota_retry_seconds = 120
    before = timezone.now()
    services.conversions_upload_pending()
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.PENDING
    assert conversion.next_attempt_at >= before + timedelta(seconds=60)  # the platform's delay, not 1 s


def test_gives_up_after_the_configured_attempts(service_client, actions, sandbox, settings):
    settings.CONVERSIONS_UPLOAD_MAX_ATTEMPTS = 2
    service_client.post(GOOGLE_URL, google_conversion(), format="json")
    sandbox.google.state.faults.unavailable = 1.0
    services.conversions_upload_pending()
    far = timezone.now() + timedelta(hours=2)
    services.conversions_upload_pending(now=far)
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.FAILED
    assert conversion.attempts == 2
    # The operator's retry gives it a fresh start.
    sandbox.google.state.faults.reset()
    assert services.conversions_retry(conversion_ids=[conversion.pk]) == 1
    services.conversions_upload_pending()
    assert Conversion.objects.get().status == Conversion.Status.UPLOADED


def test_refused_credentials_keep_rows_pending_without_spending_attempts(service_client, actions, sandbox):
    service_client.post(META_URL, meta_event(), format="json")
    sandbox.meta.state.faults.auth = 1.0
    summary = services.conversions_upload_pending()
    assert summary.outcomes["auth_error"] == 1
    conversion = Conversion.objects.get()
    assert conversion.status == Conversion.Status.PENDING
    assert conversion.attempts == 0
    assert "Credentials refused" in conversion.last_error
    assert conversion.next_attempt_at > timezone.now() + timedelta(minutes=5)


def test_batches_are_at_most_2000_per_google_request(service_client, actions, sandbox):
    for _ in range(2):
        batch = [google_conversion(user={}) for _ in range(1100)]
        assert service_client.post(GOOGLE_URL, {"conversions": batch}, format="json").status_code == 202
    calls_before = google_upload_calls(sandbox)
    summary = services.conversions_upload_pending()
    assert summary.requests == 2
    assert google_upload_calls(sandbox) - calls_before == 2
    assert statuses() == {"uploaded": 2200}


def test_groups_per_account_and_action(service_client, actions, sandbox):
    service_client.post(
        GOOGLE_URL,
        {
            "conversions": [
                google_conversion(conversion_action="880000001"),
                google_conversion(conversion_action="880000002"),
                google_conversion(conversion_action="880000011"),
            ]
        },
        format="json",
    )
    service_client.post(META_URL, meta_event(), format="json")
    summary = services.conversions_upload_pending()
    assert summary.requests == 4
    assert statuses() == {"uploaded": 4}


def test_the_task_uploads_and_a_second_run_waits_for_the_lock(service_client, actions, sandbox):
    from django.core.cache import cache

    service_client.post(GOOGLE_URL, google_conversion(), format="json")
    cache.set(tasks.UPLOAD_LOCK_KEY, "another-worker", timeout=60)
    assert tasks.upload_pending() == {"skipped": 1}
    assert statuses() == {"pending": 1}
    cache.delete(tasks.UPLOAD_LOCK_KEY)
    result = tasks.upload_pending()
    assert result["uploaded"] == 1
    assert cache.get(tasks.UPLOAD_LOCK_KEY) is None


RAW_IDENTIFIERS = (
    "Jane.Doe@Gmail.com",
    "jane.doe@gmail.com",
    "janedoe@gmail.com",
    "John_Smith@gmail.com",
    "john_smith@gmail.com",
    "5551212",
)


def _rows_containing(needle: str) -> list[tuple[str, str]]:
    """Every (table, column) whose text holds ``needle``: all tables, every column cast to text."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
            for column in columns:
                quoted_table = connection.ops.quote_name(table)
                quoted_column = connection.ops.quote_name(column)
                cursor.execute(
                    # Names come from the database catalogue, quoted; the needle is a parameter.
                    f"SELECT COUNT(*) FROM {quoted_table} WHERE LOWER(CAST({quoted_column} AS TEXT)) LIKE %s",  # noqa: S608
                    [f"%{needle.lower()}%"],
                )
                if cursor.fetchone()[0]:
                    found.append((table, column))
    return found


def test_raw_identifiers_appear_in_no_table_and_no_log_line(service_client, actions, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    service_client.post(GOOGLE_URL, {"conversions": [google_conversion(), google_conversion()]}, format="json")
    service_client.post(META_URL, {"events": [meta_event(), meta_event()]}, format="json")
    # Invalid ones too: error answers and logs must not echo them either.
    bad = service_client.post(
        GOOGLE_URL, google_conversion(user={"email": "Jane.Doe@Gmail.com", "phone": "650 555 0199"}), format="json"
    )
    assert bad.status_code == 400
    assert "0199" not in bad.content.decode()
    services.conversions_upload_pending()
    assert statuses() == {"uploaded": 4}
    for raw in RAW_IDENTIFIERS:
        assert _rows_containing(raw) == [], raw
        for record in caplog.records:
            assert raw.lower() not in record.getMessage().lower()
            assert raw.lower() not in str(vars(record)).lower()


def test_reclaim_and_expiry_use_the_same_clock(actions):
    """Rows claimed in the future of a fixed clock are not reclaimed early (guards the test helpers)."""
    now = datetime.now(UTC)
    assert services.conversions_reclaim_stale_claims(now=now) == 0
    assert services.conversions_expire_stale(now=now) == 0


def test_a_meta_upload_held_back_by_the_usage_pause_spends_no_attempt(service_client, actions, sandbox):
    from platforms.registry import reset_platforms

    before = sandbox.meta.state.usage_pct, sandbox.meta.state.regain_minutes
    sandbox.meta.state.usage_pct, sandbox.meta.state.regain_minutes = 100, 2
    try:
        service_client.post(META_URL, meta_event(), format="json")
        services.conversions_upload_pending()  # sent; Meta's answer says usage is full for 2 minutes
        assert Conversion.objects.get().status == Conversion.Status.UPLOADED
        service_client.post(META_URL, meta_event(), format="json")
        requests_before = len(sandbox.meta.state.requests)
        services.conversions_upload_pending()  # held back by the adapter: not sent
        waiting = Conversion.objects.get(status=Conversion.Status.PENDING)
        assert len(sandbox.meta.state.requests) == requests_before
        assert waiting.attempts == 0 and "not sent" in waiting.last_error
        assert waiting.next_attempt_at > timezone.now() + timedelta(seconds=100)  # the pause Meta announced
    finally:
        sandbox.meta.state.usage_pct, sandbox.meta.state.regain_minutes = before
        reset_platforms()  # forget the adapter's pause for the next tests
