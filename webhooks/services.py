"""Every write and workflow of the webhook app: receive, process, route, deliver, close the loop.

The flow: a receiver authenticates the source (``webhook_source_authenticate_*``), stores the raw
event and enqueues its processing after commit (``webhook_event_ingest``); a worker turns it
into a ``Lead``, routes it (``lead_route``) and creates one ``LeadDelivery`` per destination;
each delivery is sent once (``lead_delivery_send``). ``webhook_backlog_sweep`` re-enqueues what
the broker never saw. Raw PII (emails, phones, names) and secrets never reach a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign, Platform
from webhooks.metrics import WEBHOOK_EVENTS, WEBHOOK_LAG
from webhooks.models import (
    Destination,
    Lead,
    LeadDelivery,
    LeadStage,
    Priority,
    RoutingRule,
    WebhookEvent,
    WebhookSource,
)

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 5 * 60
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Headers kept with each event for forensics; the shared-secret header is never among them.
STORED_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-request-id",
    "x-forwarded-for",
)


# --- Errors ------------------------------------------------------------------------------


class WebhookAuthError(Exception):
    """The sender did not prove it knows a source's secret (401; nothing is stored)."""


class LeadPayloadError(ValueError):
    """The event body cannot become a lead; the message names fields, never values."""


class DeliveryTemporaryError(Exception):
    """The destination should be tried again later (timeout, connection error, 5xx, 429)."""

    def __init__(self, message: str, *, retry_in_seconds: float, response_code: int | None = None) -> None:
        super().__init__(message)
        self.retry_in_seconds = retry_in_seconds
        self.response_code = response_code


class _DeliveryPermanentError(Exception):
    def __init__(self, message: str, *, response_code: int | None = None) -> None:
        super().__init__(message)
        self.response_code = response_code


# --- Settings with defaults (so the app works before anyone adds them) ---------------------


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _delivery_timeout() -> tuple[float, float]:
    # (connect, read): a slow CRM must not hold a worker longer than this.
    return (3.05, float(_setting("LEAD_DELIVERY_TIMEOUT_SECONDS", 10)))


# --- Source authentication ---------------------------------------------------------------


def _secret_key_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are ``whsec_`` + base64; the HMAC key is the decoded bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def standard_webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, as Standard Webhooks signs."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


_SOURCES_VERSION_KEY = "webhooks:sources-version"
# How long a process trusts its copy before asking the shared cache whether an operator
# changed a source: a revoked secret stops working everywhere within this time.
_SOURCES_RECHECK_SECONDS = 2.0


class _SourceCache:
    def __init__(self) -> None:
        self.version: str | None = None
        self.checked_at = 0.0
        self.by_kind: dict[str, list[WebhookSource]] | None = None
        self.lock = threading.Lock()


_source_cache = _SourceCache()


def webhook_sources_invalidate() -> None:
    """Call after any change to a source: every process reloads sources within seconds."""
    cache.set(_SOURCES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    with _source_cache.lock:
        _source_cache.by_kind = None


def _shared_version(key: str) -> str | None:
    """The change token kept in the shared cache, or None while the cache (Redis) is unreachable:
    receipt and routing must keep working through a cache outage."""
    try:
        version = cache.get(key)
        if version is None:
            version = uuid.uuid4().hex
            if not cache.add(key, version, timeout=None):
                version = cache.get(key)
        return version
    except Exception:
        return None


def _active_sources(kind: str) -> list[WebhookSource]:
    """Active sources of a kind, from process memory: receipt costs no query for them."""
    now = time.monotonic()
    with _source_cache.lock:
        if _source_cache.by_kind is not None and now - _source_cache.checked_at < _SOURCES_RECHECK_SECONDS:
            return _source_cache.by_kind.get(kind, [])
    version = _shared_version(_SOURCES_VERSION_KEY)
    with _source_cache.lock:
        # No version (the cache is unreachable): read the sources again, at most every few seconds.
        if _source_cache.by_kind is None or version is None or version != _source_cache.version:
            by_kind: dict[str, list[WebhookSource]] = {}
            for source in WebhookSource.objects.filter(is_active=True).order_by("pk"):
                by_kind.setdefault(source.kind, []).append(source)
            _source_cache.by_kind = by_kind
            _source_cache.version = version
        _source_cache.checked_at = now
        return _source_cache.by_kind.get(kind, [])


def _any_secret_matches(candidate: str, sources: Iterable[WebhookSource]) -> WebhookSource | None:
    candidate_bytes = candidate.encode()
    matched = None
    for source in sources:
        for secret in source.active_secrets:
            # Keep comparing after a match so the time taken does not depend on which secret matched.
            if hmac.compare_digest(candidate_bytes, secret.encode()) and matched is None:
                matched = source
    return matched


def webhook_source_authenticate_relay(
    *, headers: Mapping[str, str], raw_body: bytes, now: float | None = None
) -> WebhookSource:
    """The relay source whose secret the request proves: a signature if one is sent, else the header."""
    sources = _active_sources(WebhookSource.Kind.RELAY)
    signature_header = headers.get("webhook-signature", "")
    if signature_header:
        msg_id = headers.get("webhook-id", "")
        raw_timestamp = headers.get("webhook-timestamp", "")
        if not msg_id or not raw_timestamp.isdigit():
            raise WebhookAuthError("A signed request needs webhook-id and a unix webhook-timestamp.")
        timestamp = int(raw_timestamp)
        now = time.time() if now is None else now
        if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookAuthError("webhook-timestamp is more than 5 minutes away from our clock.")
        offered = [part.strip() for part in signature_header.split(" ") if part.strip().startswith("v1,")]
        matched = None
        for source in sources:
            for secret in source.active_secrets:
                expected = standard_webhook_signature(
                    secret=secret, msg_id=msg_id, timestamp=timestamp, body=raw_body
                ).encode()
                for signature in offered:
                    if hmac.compare_digest(expected, signature.encode()) and matched is None:
                        matched = source
        if matched is None:
            raise WebhookAuthError("The webhook-signature does not match any active secret.")
        return matched
    shared_secret = headers.get("x-webhook-secret", "")
    if not shared_secret:
        raise WebhookAuthError("Send the X-Webhook-Secret header or a Standard Webhooks signature.")
    matched = _any_secret_matches(shared_secret, sources)
    if matched is None:
        raise WebhookAuthError("The X-Webhook-Secret does not match any active source.")
    return matched


def webhook_source_authenticate_google(*, google_key: Any) -> WebhookSource:
    """The lead-form source whose key Google sent in the body (Google signs nothing else)."""
    if not isinstance(google_key, str) or not google_key:
        raise WebhookAuthError("The body has no google_key.")
    matched = _any_secret_matches(google_key, _active_sources(WebhookSource.Kind.GOOGLE_LEAD_FORM))
    if matched is None:
        raise WebhookAuthError("The google_key does not match any configured lead form key.")
    return matched


def webhook_source_seed_from_settings() -> list[WebhookSource]:
    """Create or update the default sources from WEBHOOK_SECRET and GOOGLE_LEAD_FORM_KEY.

    Called at start-up. An empty setting leaves its source alone, so secrets set in admin
    survive a restart; ``previous_secret`` is never touched (rotation stays an operator's call).
    """
    seeded = []
    for name, kind, secret in (
        ("zapier", WebhookSource.Kind.RELAY, settings.WEBHOOK_SECRET),
        ("google-lead-form", WebhookSource.Kind.GOOGLE_LEAD_FORM, settings.GOOGLE_LEAD_FORM_KEY),
    ):
        if not secret:
            continue
        source, created = WebhookSource.objects.get_or_create(
            name=name, defaults={"kind": kind, "secret": secret, "is_active": True}
        )
        if not created and (source.secret != secret or source.kind != kind):
            source.secret = secret
            source.kind = kind
            source.save(update_fields=["secret", "kind", "updated_at"])
        logger.info("webhook source seeded", extra={"source": name, "was_created": created})
        seeded.append(source)
    webhook_sources_invalidate()
    return seeded


# --- Receiving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    event_id: int
    created: bool


def _unwrap_relayed(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Make.com scenarios sometimes wrap the Google body in one envelope key."""
    if "user_column_data" not in payload:
        for key in ("data", "body", "lead", "payload"):
            inner = payload.get(key)
            if isinstance(inner, dict) and "user_column_data" in inner:
                return inner
    return payload


def webhook_event_dedupe_key(*, payload: Mapping[str, Any], headers: Mapping[str, str], raw_body: bytes) -> str:
    """The same lead (its lead_id), else the same message (webhook-id), else the same bytes."""
    lead_id = _unwrap_relayed(payload).get("lead_id")
    if isinstance(lead_id, (str, int)) and str(lead_id).strip():
        key = f"lead:{str(lead_id).strip()}"
    elif headers.get("webhook-id"):
        key = f"msg:{headers['webhook-id']}"
    else:
        return f"sha256:{hashlib.sha256(raw_body).hexdigest()}"
    return key if len(key) <= 255 else f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def webhook_event_ingest(
    *, source: WebhookSource, raw_body: bytes, headers: Mapping[str, str], payload: Mapping[str, Any]
) -> IngestResult:
    """Store the event (or find its first copy) and enqueue processing once it is committed."""
    dedupe_key = webhook_event_dedupe_key(payload=payload, headers=headers, raw_body=raw_body)
    stored_headers = {name: headers[name][:500] for name in STORED_HEADERS if headers.get(name)}
    fields = {
        "source": source,
        "dedupe_key": dedupe_key,
        "raw_body": raw_body.decode("utf-8"),
        "headers": stored_headers,
        "received_at": timezone.now(),
    }
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a duplicate must not break the caller's transaction
                event = WebhookEvent.objects.create(**fields)
        else:
            # Autocommit: one round trip, and the row is committed when create() returns.
            event = WebhookEvent.objects.create(**fields)
    except IntegrityError:
        first = WebhookEvent.objects.filter(source=source, dedupe_key=dedupe_key).values_list("pk", flat=True).first()
        if first is None:  # the constraint fired for another reason: a bug, so let it surface
            raise
        WEBHOOK_EVENTS.labels(source.name, "duplicate").inc()
        return IngestResult(event_id=first, created=False)
    # After commit (at once in autocommit), so a worker never looks for a row it cannot see yet.
    transaction.on_commit(lambda: enqueue_event_processing(event_id=event.pk, wait=False))
    WEBHOOK_EVENTS.labels(source.name, "accepted").inc()
    return IngestResult(event_id=event.pk, created=True)


def webhook_event_record_refusal(*, source_label: str, outcome: str) -> None:
    """Count a refused request (unauthorized / invalid); nothing else is kept of it."""
    WEBHOOK_EVENTS.labels(source_label, outcome).inc()


# --- Enqueueing, never blocking on the broker ------------------------------------------------


class _BrokerCircuit:
    """After a publish fails, skip publishing for a while: the sweeper enqueues from the database.

    Without it every message during a broker outage would pay the connection timeout (~2 s).
    """

    pause_seconds = 30.0

    def __init__(self) -> None:
        self._open_until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.pause_seconds

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


broker_circuit = _BrokerCircuit()


def _publish(task: Any, *args: Any, countdown: float | None = None, first: bool = False) -> bool:
    """Publish without waiting on a broker that is down; ``first``: ahead of the default priority."""
    if broker_circuit.is_open():
        return False
    # Only when asked: an explicit priority=None would not fall back to the default, but to the top.
    options = {"priority": _setting("LEAD_TASK_PRIORITY", 0)} if first else {}
    try:
        task.apply_async(args=args, countdown=countdown, retry=False, **options)
    except Exception as exc:  # any broker failure: the row is committed and the sweeper will retry
        broker_circuit.trip()
        logger.warning(
            "broker unavailable; left for the sweeper",
            extra={"task": task.name, "error_class": type(exc).__name__},
        )
        return False
    return True


# Events per processing message: the cap keeps one message's work short enough that several
# workers share a burst.
EVENTS_PER_MESSAGE = 50
# How long the publisher waits for more ids to join the first one. Without it batches would form
# only when events arrive faster than one publish takes (~1 ms), i.e. almost never, while each
# lone publish costs a web process as much CPU as the rest of its request. 20 ms more before a
# worker picks a lead up is nothing next to the seconds a person takes to answer it.
PUBLISH_LINGER_SECONDS = 0.02


class _BackgroundPublisher:
    """Publishes event ids from a daemon thread, so a web request never waits on the broker.

    Even a refused connection costs the Redis client about two seconds; the request has
    already committed its row, so handing the id to a thread loses nothing: an id dropped
    (queue full, process killed, broker down) is found by the sweeper. Ids that arrive within
    ``PUBLISH_LINGER_SECONDS`` of each other leave together in one message: a Celery publish
    costs ~0.8 ms of CPU, more than the rest of a webhook request, so one message per event
    would halve what a web process can accept.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue[int] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, event_id: int) -> bool:
        self._ensure_thread()
        try:
            self._queue.put_nowait(event_id)
        except queue.Full:
            logger.warning("publish queue full; left for the sweeper", extra={"event_id": event_id})
            return False
        return True

    def join(self) -> None:
        """Wait until everything submitted so far was published or dropped (tests)."""
        self._queue.join()

    def flush(self, timeout_seconds: float) -> bool:
        """At shutdown: give the ids still queued up to ``timeout_seconds`` to go out; True if they did.

        Whatever is left is not lost (its rows are committed), only late: the sweeper finds it.
        """
        deadline = time.monotonic() + timeout_seconds
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _ensure_thread(self) -> None:
        # A forked child (gunicorn worker, Celery prefork) inherits no running thread.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-publisher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        from webhooks import tasks  # tasks import services

        while True:
            batch = [self._queue.get()]
            if self._queue.qsize() < EVENTS_PER_MESSAGE - 1:
                # Sleep rather than wait on the queue: a wait would wake this thread (and take the
                # GIL from a request) once for every id that joins.
                time.sleep(PUBLISH_LINGER_SECONDS)
            while len(batch) < EVENTS_PER_MESSAGE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                _publish(tasks.process_webhook_events, batch, first=True)
            finally:
                for _ in batch:
                    self._queue.task_done()


background_publisher = _BackgroundPublisher()


def enqueue_event_processing(*, event_id: int, wait: bool = True) -> bool:
    """Publish the processing of one event; ``wait=False`` (the request path) hands it to a thread."""
    if not wait:
        return background_publisher.submit(event_id)
    return enqueue_events_processing(event_ids=[event_id]) == 1


def enqueue_events_processing(*, event_ids: list[int]) -> int:
    """Publish the processing of many events, ``EVENTS_PER_MESSAGE`` to a message; how many went."""
    from webhooks import tasks

    published = 0
    for start in range(0, len(event_ids), EVENTS_PER_MESSAGE):
        chunk = event_ids[start : start + EVENTS_PER_MESSAGE]
        if not _publish(tasks.process_webhook_events, chunk, first=True):
            break  # the broker is down: the sweeper will find the rest
        published += len(chunk)
    return published


# Leads whose deliveries jump the queue: "urgent and high go out at once".
FIRST_PRIORITIES = frozenset({Priority.URGENT, Priority.HIGH})


def enqueue_delivery(*, delivery_id: int, lead_priority: str, countdown: float | None = None) -> bool:
    from webhooks import tasks

    return _publish(tasks.deliver_lead, delivery_id, countdown=countdown, first=lead_priority in FIRST_PRIORITIES)


# --- Parsing and normalizing -----------------------------------------------------------------


def phone_to_e164(raw: str, *, default_country_code: str = "1") -> str:
    """``+`` and 8–15 digits, or "" when the number cannot be read.

    A number without ``+`` or ``00`` is taken as national in ``default_country_code``
    (its trunk ``0`` dropped outside the NANP). Not a full numbering plan: no per-country
    lengths except the NANP's, which is the common case for these leads.
    """
    text = re.sub(r"(?i)\s*(?:ext\.?|extension|x|#)\s*\d{1,6}\s*$", "", (raw or "").strip())
    if re.search(r"[A-Za-z]", text):
        return ""
    international = text.startswith("+")
    digits = re.sub(r"\D", "", text)
    if not digits:
        return ""
    if not international:
        if digits.startswith("00"):
            digits = digits[2:]
        elif not default_country_code:
            return ""
        elif default_country_code == "1" and len(digits) == 11 and digits.startswith("1"):
            pass
        else:
            national = digits[1:] if digits.startswith("0") and default_country_code != "1" else digits
            digits = default_country_code + national
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        return ""
    if digits.startswith("1") and len(digits) != 11:
        return ""
    return "+" + digits


def _int64_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if INT64_MIN <= number <= INT64_MAX else None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y")
    return bool(value)


def _datetime_or_none(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # epoch milliseconds from some relays
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            return None
        if parsed is not None and timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    return None


def _text(value: Any, limit: int = 255) -> str:
    # PostgreSQL text and jsonb refuse NUL characters, which JSON can carry as \u0000.
    return "" if value is None else str(value).replace("\x00", "").strip()[:limit]


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_text(key, 100): _without_nul(item) for key, item in value.items()}
    return value


@dataclass
class LeadData:
    """A lead as read from either payload shape, before it is stored."""

    external_lead_id: str = ""
    full_name: str = ""
    email: str = ""
    phone: str = ""
    phone_raw: str = ""
    gclid: str = ""
    campaign_external_id: int | None = None
    form_id: int | None = None
    adgroup_id: int | None = None
    creative_id: int | None = None
    asset_group_id: int | None = None
    custom_answers: dict[str, Any] = field(default_factory=dict)
    is_test: bool = False
    submitted_at: datetime | None = None


# Flat keys (lower-cased) Make.com / Zapier scenarios use for each lead field.
_FLAT_ALIASES = {
    "lead_id": ("lead_id", "leadid"),
    "email": ("email", "email_address", "user_email", "work_email"),
    "phone": ("phone", "phone_number", "user_phone", "mobile", "work_phone"),
    "full_name": ("full_name", "name", "fullname"),
    "first_name": ("first_name", "firstname", "given_name"),
    "last_name": ("last_name", "lastname", "family_name", "surname"),
    "gclid": ("gclid", "gcl_id"),
    "campaign_id": ("campaign_id",),
    "form_id": ("form_id",),
    "adgroup_id": ("adgroup_id", "ad_group_id"),
    "creative_id": ("creative_id",),
    "asset_group_id": ("asset_group_id",),
    "is_test": ("is_test",),
    "submitted_at": ("lead_submit_time", "submitted_at", "submit_time", "created_time"),
}
# Google column ids that fill lead fields; every other column is a custom answer.
_GOOGLE_COLUMNS = {
    "FULL_NAME": "full_name",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE": "phone",
}
# Envelope fields that are not the lead's answers (google_key is a secret: never copied).
_NOT_ANSWERS = {"google_key", "api_version", "user_column_data", "lead_stage", "data", "body", "payload"}


def lead_data_from_payload(payload: Mapping[str, Any]) -> LeadData:
    """Read a flat Make.com/Zapier object or a (relayed) Google lead form body."""
    if not isinstance(payload, Mapping):
        raise LeadPayloadError("The body is not a JSON object.")
    body = _unwrap_relayed(payload)
    by_lower = {str(k).strip().lower(): v for k, v in body.items()}
    values: dict[str, Any] = {}
    used_keys: set[str] = set()
    for field_name, aliases in _FLAT_ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                used_keys.add(alias)
                if by_lower[alias] not in (None, ""):
                    values.setdefault(field_name, by_lower[alias])
    answers: dict[str, Any] = {}
    columns = body.get("user_column_data")
    if columns is not None:
        if not isinstance(columns, list):
            raise LeadPayloadError("user_column_data is not a list.")
        for column in columns:
            if not isinstance(column, Mapping):
                continue
            column_id = _text(column.get("column_id") or column.get("column_name"), 100)
            value = column.get("string_value")
            if not column_id or value in (None, ""):
                continue
            target = _GOOGLE_COLUMNS.get(column_id.upper())
            if target:
                # The form's own answers win over relay-level copies of the same field.
                values[target] = value
            else:
                answers[column_id] = value
    if columns is None:
        # A flat relay's extra keys are the form's custom answers. Google's own envelope has
        # its answers in user_column_data, and its unknown top-level fields are ignored.
        for key, value in body.items():
            lowered = str(key).strip().lower()
            if lowered not in used_keys and lowered not in _NOT_ANSWERS and not lowered.endswith("_key"):
                answers[str(key)[:100]] = value

    full_name = _text(values.get("full_name"))
    if not full_name:
        full_name = " ".join(_text(values.get(k)) for k in ("first_name", "last_name") if values.get(k)).strip()
    phone_raw = _text(values.get("phone"), 64)
    data = LeadData(
        external_lead_id=_text(values.get("lead_id")),
        full_name=full_name,
        email=_text(values.get("email"), 254).lower(),
        phone=phone_to_e164(phone_raw, default_country_code=str(_setting("LEADS_DEFAULT_PHONE_COUNTRY_CODE", "1"))),
        phone_raw=phone_raw,
        gclid=_text(values.get("gclid")),
        campaign_external_id=_int64_or_none(values.get("campaign_id")),
        form_id=_int64_or_none(values.get("form_id")),
        adgroup_id=_int64_or_none(values.get("adgroup_id")),
        creative_id=_int64_or_none(values.get("creative_id")),
        asset_group_id=_int64_or_none(values.get("asset_group_id")),
        custom_answers=_without_nul(answers),
        is_test=_bool(values.get("is_test", False)),
        submitted_at=_datetime_or_none(values.get("submitted_at")),
    )
    if not (data.email or data.phone_raw or data.full_name):
        raise LeadPayloadError("The lead has no email, phone or name.")
    return data


def _campaign_for(external_id: int | None) -> Campaign | None:
    if external_id is None:
        return None
    # Filtering on both platforms uses the (platform, external_id) index. Lead forms are
    # Google's, so its campaign wins when both platforms share the number.
    candidates = list(
        Campaign.objects.filter(platform__in=(Platform.GOOGLE, Platform.META), external_id=str(external_id))
    )
    candidates.sort(key=lambda c: c.platform != Platform.GOOGLE)
    return candidates[0] if candidates else None


# --- Routing -----------------------------------------------------------------------------------

CONDITION_OPERATORS = ("equals", "not_equals", "contains", "in", "regex", "gt", "gte", "lt", "lte", "exists")
# Lead attributes a condition can name; any other name is looked up in the custom answers.
LEAD_FIELDS = {
    "email": lambda lead: lead.email,
    "email_domain": lambda lead: lead.email.rpartition("@")[2] if "@" in lead.email else "",
    "phone": lambda lead: lead.phone,
    "phone_country": lambda lead: _phone_country(lead.phone),
    "full_name": lambda lead: lead.full_name,
    "gclid": lambda lead: lead.gclid,
    "campaign_id": lambda lead: lead.campaign_external_id,
    "campaign_name": lambda lead: lead.campaign.name if lead.campaign_id else "",
    "form_id": lambda lead: lead.form_id,
    "adgroup_id": lambda lead: lead.adgroup_id,
    "creative_id": lambda lead: lead.creative_id,
    "asset_group_id": lambda lead: lead.asset_group_id,
    "is_test": lambda lead: lead.is_test,
    "source": lambda lead: lead.source.name if lead.source_id else "",
}


def _phone_country(phone: str) -> str:
    return "1" if phone.startswith("+1") else phone[1:3]


@dataclass(frozen=True)
class CompiledCondition:
    field: str
    op: str
    value: Any
    pattern: re.Pattern | None = None


@dataclass(frozen=True)
class CompiledRule:
    id: int
    name: str
    priority: str
    conditions: tuple[CompiledCondition, ...]
    destinations: tuple[tuple[int, str], ...]  # (destination id, kind), active ones only


@dataclass(frozen=True)
class RouteDecision:
    priority: str
    rule_id: int | None
    rule_name: str
    destinations: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class ConditionResult:
    field: str
    op: str
    expected: Any
    actual: Any
    matched: bool


def routing_conditions_validate(conditions: Any) -> list[dict[str, Any]]:
    """Raise ValidationError unless ``conditions`` is a list of well-formed conditions."""
    if not isinstance(conditions, list):
        raise ValidationError("Conditions must be a list of {field, op, value} objects.")
    for index, condition in enumerate(conditions, start=1):
        if not isinstance(condition, dict) or not isinstance(condition.get("field"), str) or not condition["field"]:
            raise ValidationError(f"Condition {index}: needs a field name.")
        op = condition.get("op")
        if op not in CONDITION_OPERATORS:
            raise ValidationError(f"Condition {index}: op must be one of {', '.join(CONDITION_OPERATORS)}.")
        if op != "exists" and "value" not in condition:
            raise ValidationError(f"Condition {index}: needs a value.")
        if op == "regex":
            try:
                re.compile(str(condition["value"]))
            except re.error as exc:
                raise ValidationError(f"Condition {index}: invalid regex ({exc}).") from None
        if op in ("gt", "gte", "lt", "lte") and _number(condition["value"]) is None:
            raise ValidationError(f"Condition {index}: {op} needs a number.")
    return conditions


def _compile_condition(raw: Mapping[str, Any]) -> CompiledCondition:
    op = raw.get("op", "equals")
    value = raw.get("value")
    pattern = None
    if op == "regex":
        try:
            pattern = re.compile(str(value))
        except re.error:
            pattern = re.compile(r"(?!)")  # never matches: a bad rule must not route everything
    if op == "in" and isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    return CompiledCondition(field=str(raw.get("field", "")), op=op, value=value, pattern=pattern)


def _compile_rule(rule: RoutingRule) -> CompiledRule:
    conditions = rule.conditions if isinstance(rule.conditions, list) else []
    return CompiledRule(
        id=rule.pk,
        name=rule.name,
        priority=rule.priority,
        conditions=tuple(_compile_condition(c) for c in conditions if isinstance(c, Mapping)),
        destinations=tuple((d.pk, d.kind) for d in rule.destinations.all() if d.is_active),
    )


_ROUTING_VERSION_KEY = "webhooks:routing-rules-version"
# Even if a cache write is lost, no process routes on stale rules for longer than this.
_ROUTING_MAX_AGE_SECONDS = 300.0


class _RoutingRuleCache:
    def __init__(self) -> None:
        self.version: str | None = None
        self.loaded_at = 0.0
        self.rules: tuple[CompiledRule, ...] = ()
        self.lock = threading.Lock()


_routing_cache = _RoutingRuleCache()


def routing_rules_invalidate() -> None:
    """Tell every process (web, workers) to reload the rules: a new token in the shared cache."""
    cache.set(_ROUTING_VERSION_KEY, uuid.uuid4().hex, timeout=None)


def routing_rules_active() -> tuple[CompiledRule, ...]:
    """Active rules in order, held in process memory; one cache read per call, no query."""
    version = _shared_version(_ROUTING_VERSION_KEY)
    with _routing_cache.lock:
        fresh = time.monotonic() - _routing_cache.loaded_at < _ROUTING_MAX_AGE_SECONDS
        if version is not None and version == _routing_cache.version and fresh:
            return _routing_cache.rules
        rules = RoutingRule.objects.filter(is_active=True).prefetch_related("destinations").order_by("position", "id")
        _routing_cache.rules = tuple(_compile_rule(rule) for rule in rules)
        _routing_cache.version = version
        _routing_cache.loaded_at = time.monotonic()
        return _routing_cache.rules


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


def _lead_value(lead: Lead, name: str) -> Any:
    if name in LEAD_FIELDS:
        return LEAD_FIELDS[name](lead)
    key = name.removeprefix("answers.")
    answers = lead.custom_answers or {}
    if key in answers:
        return answers[key]
    lowered = key.lower()
    return next((v for k, v in answers.items() if k.lower() == lowered), None)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def _condition_holds(condition: CompiledCondition, actual: Any) -> bool:
    op, expected = condition.op, condition.value
    if op == "exists":
        present = actual not in (None, "", [], {})
        return present if expected in (None, True, "true", 1) else not present
    if op in ("gt", "gte", "lt", "lte"):
        left, right = _number(actual), _number(expected)
        if left is None or right is None:
            return False
        return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]
    text = _as_text(actual)
    if op == "equals":
        return text == _as_text(expected)
    if op == "not_equals":
        return text != _as_text(expected)
    if op == "contains":
        return _as_text(expected) in text
    if op == "in":
        options = expected if isinstance(expected, (list, tuple)) else [expected]
        return text in {_as_text(option) for option in options}
    if op == "regex":
        return bool(condition.pattern and condition.pattern.search("" if actual is None else str(actual)))
    return False


def routing_rule_explain(*, rule: RoutingRule, lead: Lead) -> list[ConditionResult]:
    """Each condition of one rule against one lead: the admin's "test this rule" preview."""
    compiled = _compile_rule(rule)
    results = []
    for condition in compiled.conditions:
        actual = _lead_value(lead, condition.field)
        results.append(
            ConditionResult(
                field=condition.field,
                op=condition.op,
                expected=condition.value,
                actual=actual,
                matched=_condition_holds(condition, actual),
            )
        )
    return results


def lead_route(*, lead: Lead) -> RouteDecision:
    """The first active rule whose conditions all hold; normal priority and nowhere if none does."""
    for rule in routing_rules_active():
        if all(_condition_holds(c, _lead_value(lead, c.field)) for c in rule.conditions):
            return RouteDecision(
                priority=rule.priority, rule_id=rule.id, rule_name=rule.name, destinations=rule.destinations
            )
    return RouteDecision(priority=Priority.NORMAL, rule_id=None, rule_name="", destinations=())


# --- Processing --------------------------------------------------------------------------------

# An event that keeps crashing its worker (a bug, bad data the database refuses) stops here
# instead of being swept forever; the admin's replay starts it again.
MAX_EVENT_ATTEMPTS = 10


def webhook_event_process(*, event_id: int) -> Lead | None:
    """Turn a received event into a routed lead with its deliveries; a no-op once processed."""
    outcome = "processed"
    lead: Lead | None = None
    deliveries: list[LeadDelivery] = []
    # Counted in its own commit, so an attempt that crashes (and rolls back) still counts.
    WebhookEvent.objects.filter(pk=event_id, status=WebhookEvent.Status.RECEIVED).update(attempts=F("attempts") + 1)
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().select_related("source").filter(pk=event_id).first()
        if event is None or event.status != WebhookEvent.Status.RECEIVED:
            return event.lead if event else None
        now = timezone.now()
        try:
            if event.attempts > MAX_EVENT_ATTEMPTS:
                raise LeadPayloadError(f"Gave up after {MAX_EVENT_ATTEMPTS} attempts; replay it once fixed.")
            data = lead_data_from_payload(json.loads(event.raw_body))
        except (ValueError, LeadPayloadError) as exc:
            event.status = WebhookEvent.Status.FAILED
            event.last_error = str(exc)[:500] if isinstance(exc, LeadPayloadError) else "The body is not valid JSON."
            event.processed_at = now
            event.save(update_fields=["status", "attempts", "last_error", "processed_at"])
            WEBHOOK_EVENTS.labels(event.source.name, "failed").inc()
            logger.warning(
                "webhook event could not become a lead", extra={"event_id": event.pk, "reason": event.last_error}
            )
            return None
        existing = (
            Lead.objects.filter(external_lead_id=data.external_lead_id).first() if data.external_lead_id else None
        )
        if existing is not None:
            # Same Google lead through another source (e.g. direct and relayed): one lead, routed once.
            lead = existing
            outcome = "duplicate_lead"
        else:
            lead = Lead(
                source=event.source,
                received_at=event.received_at,
                processed_at=now,
                campaign=_campaign_for(data.campaign_external_id),
                **{name: getattr(data, name) for name in LeadData.__dataclass_fields__},
            )
            decision = lead_route(lead=lead)
            lead.priority = decision.priority
            lead.matched_rule_id = decision.rule_id
            lead.save()
            deliveries = LeadDelivery.objects.bulk_create(
                [
                    LeadDelivery(
                        lead=lead,
                        destination_id=destination_id,
                        status=LeadDelivery.Status.AWAITING_DIGEST
                        if lead_delivery_awaits_digest(priority=lead.priority, kind=kind)
                        else LeadDelivery.Status.PENDING,
                    )
                    for destination_id, kind in decision.destinations
                    # Google's "send test data" must never create work for the sales team's CRM.
                    if not (lead.is_test and kind == Destination.Kind.CRM)
                ]
            )
            if data.submitted_at:
                WEBHOOK_LAG.observe(max(0.0, (now - data.submitted_at).total_seconds()))
            else:
                WEBHOOK_LAG.observe(max(0.0, (now - event.received_at).total_seconds()))
        event.status = WebhookEvent.Status.PROCESSED
        event.processed_at = now
        event.lead = lead
        event.last_error = ""
        event.save(update_fields=["status", "attempts", "processed_at", "lead", "last_error"])
        # Only what goes out at once is enqueued; the digest picks up the rest on its own.
        sent_now = [d for d in deliveries if d.status == LeadDelivery.Status.PENDING]
        delivery_ids = [d.pk for d in sent_now if d.pk is not None]
        if not delivery_ids and sent_now:  # backends that do not return ids from bulk inserts
            delivery_ids = list(
                LeadDelivery.objects.filter(lead=lead, status=LeadDelivery.Status.PENDING).values_list("pk", flat=True)
            )
        transaction.on_commit(
            lambda: [enqueue_delivery(delivery_id=pk, lead_priority=lead.priority) for pk in delivery_ids]
        )
    WEBHOOK_EVENTS.labels(event.source.name, outcome).inc()
    logger.info(
        "webhook event processed",
        extra={"event_id": event.pk, "lead_id": lead.pk, "priority": lead.priority, "outcome": outcome},
    )
    return lead


def webhook_events_process(*, event_ids: Iterable[int]) -> list[int]:
    """Process each event on its own; return the ids a database error left for a retry.

    One event never holds back the others of its message: an unexpected error is logged and
    leaves that event "received", so the sweeper offers it again (and after
    ``MAX_EVENT_ATTEMPTS`` it is marked failed for an operator to replay).
    """
    retry_ids = []
    for event_id in event_ids:
        try:
            webhook_event_process(event_id=event_id)
        except DatabaseError:
            retry_ids.append(event_id)
        except Exception:
            logger.exception("webhook event processing crashed", extra={"event_id": event_id})
    return retry_ids


def webhook_event_replay(*, event: WebhookEvent) -> bool:
    """Process a failed or stuck event again; processed events are left alone (they made a lead)."""
    updated = (
        WebhookEvent.objects.filter(pk=event.pk)
        .exclude(status=WebhookEvent.Status.PROCESSED)
        .update(status=WebhookEvent.Status.RECEIVED, last_error="", attempts=0)
    )
    if updated:
        transaction.on_commit(lambda: enqueue_event_processing(event_id=event.pk))
    return bool(updated)


@dataclass(frozen=True)
class SweepResult:
    events: int
    deliveries: int


def _broker_queue_length() -> int | None:
    """Messages waiting in the default Celery queue, or None when the broker cannot say."""
    from celery import current_app

    try:
        with current_app.connection_for_write() as conn:
            declared = conn.default_channel.queue_declare(queue=current_app.conf.task_default_queue, passive=True)
            return int(declared.message_count)
    except Exception:
        return None


def webhook_backlog_sweep(*, older_than_seconds: float | None = None, limit: int = 1000) -> SweepResult:
    """Re-enqueue events and deliveries the broker may never have received.

    Tasks are idempotent, so enqueueing something already queued costs a no-op; ``swept_at``
    and ``next_attempt_at`` keep one backlog from being enqueued again every minute.
    """
    if older_than_seconds is None:
        older_than_seconds = _setting("WEBHOOK_SWEEP_AFTER_SECONDS", 60)
    waiting = _broker_queue_length()
    if waiting is not None and waiting >= limit:
        # The broker still holds a backlog: those rows are queued, not lost. Re-enqueueing them
        # now would only add copies the workers must wade through (and grow the queue faster
        # than they drain it); sweep once the queue is short again.
        logger.info("webhook sweep skipped: broker backlog", extra={"queued_messages": waiting})
        return SweepResult(events=0, deliveries=0)
    age = timedelta(seconds=older_than_seconds)
    now = timezone.now()
    cutoff = now - age
    with transaction.atomic():
        event_ids = list(
            WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, received_at__lt=cutoff)
            .filter(Q(swept_at__isnull=True) | Q(swept_at__lt=cutoff))
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )
        WebhookEvent.objects.filter(pk__in=event_ids).update(swept_at=now)
        deliveries = list(
            LeadDelivery.objects.filter(
                Q(status=LeadDelivery.Status.PENDING, next_attempt_at__isnull=True, created_at__lt=cutoff)
                | Q(status=LeadDelivery.Status.PENDING, next_attempt_at__lt=cutoff)
                | Q(status=LeadDelivery.Status.SENDING, lease_expires_at__lt=now)
            )
            .order_by("created_at")
            .values_list("pk", "lead__priority")[:limit]
        )
        LeadDelivery.objects.filter(pk__in=[pk for pk, _ in deliveries]).update(next_attempt_at=now)
    enqueue_events_processing(event_ids=event_ids)
    for delivery_id, lead_priority in deliveries:  # after an outage too, the urgent ones go first
        enqueue_delivery(delivery_id=delivery_id, lead_priority=lead_priority)
    if event_ids or deliveries:
        logger.info("webhook backlog swept", extra={"events": len(event_ids), "deliveries": len(deliveries)})
    return SweepResult(events=len(event_ids), deliveries=len(deliveries))


# --- Deliveries --------------------------------------------------------------------------------

MAX_DELIVERY_ATTEMPTS = 8
_BASE_RETRY_SECONDS = 10.0


def retry_delay_seconds(*, attempt: int, cap_seconds: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (10 s, 20 s, 40 s …), never beyond ``cap_seconds``."""
    if retry_after is not None:
        return max(1.0, min(float(retry_after), cap_seconds))
    delay = _BASE_RETRY_SECONDS * (2 ** max(0, attempt - 1))
    return min(cap_seconds, delay * random.uniform(0.8, 1.2))


def lead_to_payload(lead: Lead) -> dict[str, Any]:
    """The lead as the CRM receives it."""
    return {
        "id": lead.pk,
        "lead_id": lead.external_lead_id or None,
        "priority": lead.priority,
        "stage": lead.stage,
        "full_name": lead.full_name,
        "email": lead.email,
        "phone": lead.phone or lead.phone_raw,
        "gclid": lead.gclid or None,
        "campaign_id": lead.campaign_external_id,
        "campaign_name": lead.campaign.name if lead.campaign_id else None,
        "form_id": lead.form_id,
        "adgroup_id": lead.adgroup_id,
        "creative_id": lead.creative_id,
        "asset_group_id": lead.asset_group_id,
        "custom_answers": lead.custom_answers,
        "is_test": lead.is_test,
        "source": lead.source.name,
        "submitted_at": lead.submitted_at.isoformat() if lead.submitted_at else None,
        "received_at": lead.received_at.isoformat(),
    }


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _post_json(url: str, body: bytes, headers: dict[str, str], *, attempt: int, cap_seconds: float) -> int:
    try:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=_delivery_timeout(),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        # The exception text carries the URL, and a Slack URL is a secret: keep the class only.
        raise DeliveryTemporaryError(
            type(exc).__name__, retry_in_seconds=retry_delay_seconds(attempt=attempt, cap_seconds=cap_seconds)
        ) from None
    code = response.status_code
    if code >= 500 or code in (408, 429):
        raise DeliveryTemporaryError(
            f"HTTP {code}",
            response_code=code,
            retry_in_seconds=retry_delay_seconds(
                attempt=attempt, cap_seconds=cap_seconds, retry_after=_retry_after_seconds(response)
            ),
        )
    if not 200 <= code < 300:
        raise _DeliveryPermanentError(f"HTTP {code}", response_code=code)
    return code


def _send_to_crm(delivery: LeadDelivery, *, cap_seconds: float) -> int:
    destination, lead = delivery.destination, delivery.lead
    body = json.dumps(lead_to_payload(lead), separators=(",", ":")).encode()
    # The lead id as webhook-id lets the CRM drop a repeat after a lost acknowledgement.
    msg_id = str(lead.pk)
    timestamp = int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if destination.signing_secret:
        headers["webhook-signature"] = standard_webhook_signature(
            secret=destination.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body
        )
    return _post_json(destination.url, body, headers, attempt=delivery.attempts, cap_seconds=cap_seconds)


def _lead_summary(lead: Lead) -> str:
    lines = [
        f"Priority: {lead.get_priority_display()}",
        f"Name: {lead.full_name or '-'}",
        f"Phone: {lead.phone or lead.phone_raw or '-'}",
        f"Email: {lead.email or '-'}",
        f"Campaign: {lead.campaign.name if lead.campaign_id else lead.campaign_external_id or '-'}",
    ]
    lines += [f"{key}: {value}" for key, value in (lead.custom_answers or {}).items()]
    return "\n".join(lines)


def _send_email_message(destination: Destination, subject: str, body: str, *, attempt: int, cap_seconds: float) -> int:
    """One email to the destination's recipients (a single lead or a digest)."""
    recipients = [r.strip() for r in re.split(r"[,\n;]", destination.recipients) if r.strip()]
    if not recipients:
        raise _DeliveryPermanentError("No recipients configured.")
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except OSError as exc:  # smtplib errors are OSErrors: the mail server may be back later
        raise DeliveryTemporaryError(
            type(exc).__name__,
            retry_in_seconds=retry_delay_seconds(attempt=attempt, cap_seconds=cap_seconds),
        ) from None
    return 250


def _send_slack_text(destination: Destination, text: str, *, attempt: int, cap_seconds: float) -> int:
    """One message to a Slack-compatible incoming webhook (a single lead or a digest)."""
    body = json.dumps({"text": text}).encode()
    return _post_json(destination.url, body, {}, attempt=attempt, cap_seconds=cap_seconds)


def _send_email(delivery: LeadDelivery, *, cap_seconds: float) -> int:
    lead = delivery.lead
    subject = f"[{lead.get_priority_display()}] New lead #{lead.pk}" + (" (test)" if lead.is_test else "")
    return _send_email_message(
        delivery.destination, subject, _lead_summary(lead), attempt=delivery.attempts, cap_seconds=cap_seconds
    )


def _send_to_slack(delivery: LeadDelivery, *, cap_seconds: float) -> int:
    lead = delivery.lead
    text = f"*New {lead.get_priority_display().lower()} lead #{lead.pk}*" + (" (test)" if lead.is_test else "")
    return _send_slack_text(
        delivery.destination, f"{text}\n{_lead_summary(lead)}", attempt=delivery.attempts, cap_seconds=cap_seconds
    )


_SENDERS = {
    Destination.Kind.CRM: _send_to_crm,
    Destination.Kind.EMAIL: _send_email,
    Destination.Kind.SLACK: _send_to_slack,
}


def lead_delivery_send(*, delivery_id: int, max_delay_seconds: float) -> LeadDelivery | None:
    """Send one delivery unless it is done or another worker holds it.

    A lease (status ``sending`` until ``lease_expires_at``) is claimed with one conditional
    UPDATE, so a redelivered task cannot send in parallel and a delivered row is never sent
    again; no lock is held during the HTTP call. A worker killed mid-send leaves a lease that
    expires, and the lead is then sent again with the same webhook-id for the CRM to drop.
    Raises DeliveryTemporaryError when the caller should try again after ``retry_in_seconds``.
    """
    now = timezone.now()
    lease = timedelta(seconds=sum(_delivery_timeout()) + 30)
    claimed = (
        LeadDelivery.objects.filter(pk=delivery_id)
        .filter(Q(status=LeadDelivery.Status.PENDING) | Q(status=LeadDelivery.Status.SENDING, lease_expires_at__lt=now))
        .update(
            status=LeadDelivery.Status.SENDING, lease_expires_at=now + lease, attempts=F("attempts") + 1, updated_at=now
        )
    )
    delivery = (
        LeadDelivery.objects.select_related("destination", "lead__source", "lead__campaign")
        .filter(pk=delivery_id)
        .first()
    )
    if not claimed or delivery is None:
        return delivery
    log_context = {"delivery_id": delivery.pk, "lead_id": delivery.lead_id, "destination": delivery.destination.name}
    try:
        if not delivery.destination.is_active:
            raise _DeliveryPermanentError("Destination is inactive.")
        code = _SENDERS[delivery.destination.kind](delivery, cap_seconds=max_delay_seconds)
    except DeliveryTemporaryError as exc:
        final = delivery.attempts >= MAX_DELIVERY_ATTEMPTS
        delivery.status = LeadDelivery.Status.FAILED if final else LeadDelivery.Status.PENDING
        delivery.response_code = exc.response_code
        delivery.last_error = str(exc)[:255]
        delivery.lease_expires_at = None
        delivery.next_attempt_at = None if final else now + timedelta(seconds=exc.retry_in_seconds)
        delivery.save(
            update_fields=["status", "response_code", "last_error", "lease_expires_at", "next_attempt_at", "updated_at"]
        )
        logger.warning(
            "lead delivery failed, will retry" if not final else "lead delivery gave up",
            extra={
                **log_context,
                "attempt": delivery.attempts,
                "error": delivery.last_error,
            },
        )
        if final:
            return delivery
        raise
    except _DeliveryPermanentError as exc:
        delivery.status = LeadDelivery.Status.FAILED
        delivery.response_code = exc.response_code
        delivery.last_error = str(exc)[:255]
        delivery.lease_expires_at = None
        delivery.save(update_fields=["status", "response_code", "last_error", "lease_expires_at", "updated_at"])
        logger.warning("lead delivery refused", extra={**log_context, "error": delivery.last_error})
        return delivery
    delivery.status = LeadDelivery.Status.DELIVERED
    delivery.response_code = code
    delivery.last_error = ""
    delivery.lease_expires_at = None
    delivery.next_attempt_at = None
    delivery.delivered_at = timezone.now()
    delivery.save(
        update_fields=[
            "status",
            "response_code",
            "last_error",
            "lease_expires_at",
            "next_attempt_at",
            "delivered_at",
            "updated_at",
        ]
    )
    logger.info("lead delivered", extra={**log_context, "attempt": delivery.attempts})
    return delivery


def lead_delivery_give_up(*, delivery_id: int, reason: str) -> None:
    """Mark a delivery failed for good (the task ran out of retries)."""
    LeadDelivery.objects.filter(pk=delivery_id).exclude(status=LeadDelivery.Status.DELIVERED).update(
        status=LeadDelivery.Status.FAILED, last_error=reason[:255], lease_expires_at=None, updated_at=timezone.now()
    )


def lead_deliveries_retry(*, lead: Lead) -> int:
    """Operator action: send failed deliveries of a lead again, by the route they first took:
    a low lead's email and Slack deliveries go back into the next digest, the others out at once."""
    now = timezone.now()
    failed = list(
        lead.deliveries.filter(status=LeadDelivery.Status.FAILED).values_list("pk", "destination__kind", named=True)
    )
    to_digest = [d.pk for d in failed if lead_delivery_awaits_digest(priority=lead.priority, kind=d.destination__kind)]
    ids = [d.pk for d in failed if d.pk not in to_digest]
    LeadDelivery.objects.filter(pk__in=to_digest).update(
        status=LeadDelivery.Status.AWAITING_DIGEST, attempts=0, next_attempt_at=None, updated_at=now
    )
    LeadDelivery.objects.filter(pk__in=ids).update(
        status=LeadDelivery.Status.PENDING, attempts=0, next_attempt_at=None, updated_at=now
    )
    transaction.on_commit(lambda: [enqueue_delivery(delivery_id=pk, lead_priority=lead.priority) for pk in ids])
    return len(failed)


# --- The low-priority digest ---------------------------------------------------------------------

# "Urgent and high go out at once; low may be batched into a digest." Only the people-facing
# destinations wait: the CRM is the system of record and gets every lead at once.
DIGEST_KINDS = frozenset({Destination.Kind.EMAIL, Destination.Kind.SLACK})
# Leads listed in one digest; the rest wait for the next one.
LEAD_DIGEST_MAX_LEADS = 200
# Slack cuts a message's text at 40,000 characters: leads that would not fit wait for the next digest.
_DIGEST_TEXT_LIMITS = {Destination.Kind.SLACK: 38_000}
# Far longer than one send (an HTTP call is bounded by the delivery timeout): only a worker that
# died mid-send leaves a claim this old behind.
_DIGEST_CLAIM_SECONDS = 10 * 60
_DIGEST_OUTCOME_UNKNOWN = (
    "Digest outcome unknown: the worker stopped while sending it. Check the channel, then retry if it is missing."
)


def lead_delivery_awaits_digest(*, priority: str, kind: str) -> bool:
    """A low lead reaches people in the periodic digest, not in a message of its own."""
    return priority == Priority.LOW and kind in DIGEST_KINDS


@dataclass(frozen=True)
class DigestResult:
    destination_id: int
    leads: int  # leads listed in the message sent, or that were waiting when it failed
    sent: bool
    error: str = ""


def _digest_entry(lead: Lead, *, kind: str) -> str:
    title = f"Lead #{lead.pk}" + (" (test)" if lead.is_test else "")
    return f"{f'*{title}*' if kind == Destination.Kind.SLACK else title}\n{_lead_summary(lead)}"


def _digest_compose(destination: Destination, rows: list[LeadDelivery]) -> tuple[list[LeadDelivery], str, str]:
    """(the rows that fit, subject, text): leads oldest first, within the destination's size limit."""
    limit = _DIGEST_TEXT_LIMITS.get(destination.kind)
    included: list[LeadDelivery] = []
    entries: list[str] = []
    length = 0
    for row in rows:
        entry = _digest_entry(row.lead, kind=destination.kind)
        if limit is not None and entries and length + len(entry) > limit:
            break
        included.append(row)
        entries.append(entry)
        length += len(entry) + 2
    count = len(included)
    heading = f"Lead digest: {count} new low-priority lead{'' if count == 1 else 's'}"
    subject = f"[{Priority.LOW.label}] {heading}"
    if destination.kind == Destination.Kind.SLACK:
        return included, subject, f"*{heading}*\n\n" + "\n\n".join(entries)
    return included, subject, "\n\n".join(entries)


def _lead_digest_claims_settle(*, now: datetime) -> int:
    """Fail the claims of digest workers that died mid-send, for an operator to look at.

    Their message may or may not have gone out, and neither Slack nor email can drop a repeat,
    so they are not put back into the next digest (see ``lead_digest_send``).
    """
    settled = LeadDelivery.objects.filter(status=LeadDelivery.Status.DIGEST_SENDING, lease_expires_at__lt=now).update(
        status=LeadDelivery.Status.FAILED,
        last_error=_DIGEST_OUTCOME_UNKNOWN[:255],
        lease_expires_at=None,
        updated_at=now,
    )
    if settled:
        logger.warning("lead digest claims abandoned by a worker were failed", extra={"deliveries": settled})
    return settled


def lead_digest_send(*, destination_id: int, limit: int = LEAD_DIGEST_MAX_LEADS) -> DigestResult:
    """Send one destination ONE message listing up to ``limit`` waiting leads, then mark them delivered.

    The rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and moved to ``digest_sending``
    in a transaction committed before the send: a second worker running at the same time skips
    them (and takes only leads nobody holds), and no lock is held during the HTTP or SMTP call.

    The crash window (sent, not yet marked) is closed at-most-once: a claim whose worker died
    is failed by the next run with an "outcome unknown" error, never put back into a digest on
    its own. A repeated digest would list up to ``limit`` leads to people a second time, and
    neither Slack nor email can drop a repeat (the CRM can, by webhook-id, so its single sends
    are at-least-once); a lost digest loses no lead, which already sits in the CRM and the admin,
    and the failed rows tell an operator which leads to check (the admin's retry puts them back
    into the next digest). A send that fails (timeout, 5xx, 4xx, no recipients) releases its
    rows to wait for the next digest with ``last_error`` recorded: the next interval is the
    retry, and once a broken destination is fixed the waiting leads go out with no one's help.
    """
    now = timezone.now()
    with transaction.atomic():
        destination = Destination.objects.filter(pk=destination_id).first()
        rows = list(
            LeadDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead__source", "lead__campaign")
            .filter(destination_id=destination_id, status=LeadDelivery.Status.AWAITING_DIGEST)
            .order_by("created_at", "pk")[:limit]
        )
        if destination is None or not rows:
            return DigestResult(destination_id=destination_id, leads=0, sent=False)
        if not destination.is_active or destination.kind not in DIGEST_KINDS:
            # As for a single send: a destination switched off takes nothing, now or later.
            error = "Destination is inactive." if not destination.is_active else "Destination takes no digest."
            LeadDelivery.objects.filter(pk__in=[row.pk for row in rows]).update(
                status=LeadDelivery.Status.FAILED, last_error=error, updated_at=now
            )
            logger.warning(
                "lead digest refused", extra={"destination": destination.name, "deliveries": len(rows), "error": error}
            )
            return DigestResult(destination_id=destination_id, leads=len(rows), sent=False, error=error)
        rows, subject, text = _digest_compose(destination, rows)
        ids = [row.pk for row in rows]
        LeadDelivery.objects.filter(pk__in=ids).update(
            status=LeadDelivery.Status.DIGEST_SENDING,
            attempts=F("attempts") + 1,
            lease_expires_at=now + timedelta(seconds=_DIGEST_CLAIM_SECONDS),
            updated_at=now,
        )
    log_context = {"destination": destination.name, "leads": len(ids), "first_delivery_id": ids[0]}
    # The retry delay these helpers compute is not used: the next digest is the retry.
    cap_seconds = float(_setting("LEAD_DIGEST_INTERVAL_SECONDS", 900))
    attempt = max(row.attempts for row in rows) + 1
    try:
        if destination.kind == Destination.Kind.EMAIL:
            code = _send_email_message(destination, subject, text, attempt=attempt, cap_seconds=cap_seconds)
        else:
            code = _send_slack_text(destination, text, attempt=attempt, cap_seconds=cap_seconds)
    except (DeliveryTemporaryError, _DeliveryPermanentError) as exc:
        error = str(exc)[:255]
        LeadDelivery.objects.filter(pk__in=ids, status=LeadDelivery.Status.DIGEST_SENDING).update(
            status=LeadDelivery.Status.AWAITING_DIGEST,
            response_code=exc.response_code,
            last_error=error,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
        logger.warning("lead digest failed; its leads wait for the next one", extra={**log_context, "error": error})
        return DigestResult(destination_id=destination_id, leads=len(ids), sent=False, error=error)
    sent_at = timezone.now()
    LeadDelivery.objects.filter(pk__in=ids, status=LeadDelivery.Status.DIGEST_SENDING).update(
        status=LeadDelivery.Status.DELIVERED,
        response_code=code,
        last_error="",
        lease_expires_at=None,
        next_attempt_at=None,
        delivered_at=sent_at,
        updated_at=sent_at,
    )
    logger.info("lead digest sent", extra=log_context)
    return DigestResult(destination_id=destination_id, leads=len(ids), sent=True)


def lead_digests_send(*, limit: int = LEAD_DIGEST_MAX_LEADS) -> list[DigestResult]:
    """The periodic job: settle abandoned claims, then one digest per destination with leads waiting."""
    _lead_digest_claims_settle(now=timezone.now())
    destination_ids = sorted(
        set(
            LeadDelivery.objects.filter(status=LeadDelivery.Status.AWAITING_DIGEST)
            .order_by()
            .values_list("destination_id", flat=True)
            .distinct()
        )
    )
    return [lead_digest_send(destination_id=pk, limit=limit) for pk in destination_ids]


# --- Stage and closing the loop ----------------------------------------------------------------


def lead_conversion_hook(*, lead: Lead) -> bool:
    """Hand a lead that reached the conversion stage to the conversions ledger as a Google
    click conversion: order id = the lead's id (so a repeat is a duplicate, never a second
    conversion), gclid, the moment of the stage change, and the lead's hashed contact data.

    The action is LEAD_CONVERSION_ACTION (a Google action id or resource name) or, when
    unset, the active Google action of the lead's campaign's account. Returns True once the
    ledger holds the conversion; False (logged) when no action can be chosen or the lead's
    data is refused, so the lead can be replayed after the configuration is fixed.
    """
    from conversions import selectors as conversion_selectors
    from conversions import services as conversion_services

    reference = _setting("LEAD_CONVERSION_ACTION", "")
    if not reference and lead.campaign_id:
        action = (
            conversion_selectors.conversion_action_list(
                filters={"account__platform": "google", "account_id": lead.campaign.account_id, "is_active": True}
            )
            .order_by("id")
            .first()
        )
        reference = action.external_id if action else ""
    if not reference:
        logger.warning(
            "no Google conversion action for this lead; set LEAD_CONVERSION_ACTION", extra={"lead_id": lead.pk}
        )
        return False
    item: dict[str, Any] = {
        "gclid": lead.gclid,
        "conversion_action": reference,
        "conversion_date_time": lead.stage_changed_at or timezone.now(),
        "order_id": f"lead-{lead.pk}",
    }
    user = {key: value for key, value in (("email", lead.email), ("phone", lead.phone)) if value}
    if user:
        item["user"] = user
    try:
        conversion_services.conversions_ingest_google(items=[item], source="lead-stage")
    except conversion_services.IngestValidationError as exc:
        # The item errors can quote what was sent; only their count is logged.
        logger.warning("lead conversion refused", extra={"lead_id": lead.pk, "errors": len(exc.errors)})
        return False
    return True


def lead_stage_set(*, lead: Lead, stage: str, actor: Any = None) -> Lead:
    """Move a lead to a stage; reaching LEAD_CONVERSION_STAGE with a gclid closes the loop."""
    if stage not in LeadStage.values:
        raise ValidationError({"stage": f"Must be one of {', '.join(LeadStage.values)}."})
    if lead.stage == stage:
        return lead
    lead.stage = stage
    lead.stage_changed_at = timezone.now()
    lead.save(update_fields=["stage", "stage_changed_at", "updated_at"])
    logger.info(
        "lead stage changed",
        extra={"lead_id": lead.pk, "stage": stage, "actor": getattr(actor, "pk", None)},
    )
    conversion_stage = _setting("LEAD_CONVERSION_STAGE", LeadStage.QUALIFIED)
    if stage == conversion_stage and lead.gclid and lead.conversion_created_at is None:
        lead_id = lead.pk

        def close_loop() -> None:
            fresh = Lead.objects.get(pk=lead_id)
            if lead_conversion_hook(lead=fresh):
                Lead.objects.filter(pk=lead_id).update(conversion_created_at=timezone.now())

        transaction.on_commit(close_loop)
    return lead
