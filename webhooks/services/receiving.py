"""Receiving: store the event before the answer, then hand its id to the broker, never waiting on it."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import orjson
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler
from django.db import IntegrityError, connection, transaction
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils import timezone
from django.utils.http import parse_header_parameters

from adsplatform.db import prepared_cursor
from adsplatform.parsers import json_depth_exceeds, max_json_depth
from adsplatform.resilience import CircuitBreaker
from adsplatform.task_registry import task_named
from webhooks.metrics import WEBHOOK_EVENTS
from webhooks.models import (
    Priority,
    WebhookEvent,
    WebhookSource,
)
from webhooks.services.common import STORED_HEADERS, setting

logger = logging.getLogger(__name__)


# --- Reading bodies ----------------------------------------------------------------------------

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MULTIPART_MEDIA_TYPE = "multipart/form-data"
# What Make.com's HTTP module and Zapier's "Webhooks by Zapier" send; their XML/raw modes are not leads.
RELAY_MEDIA_TYPES = (JSON_MEDIA_TYPE, FORM_MEDIA_TYPE, MULTIPART_MEDIA_TYPE)
GOOGLE_MEDIA_TYPES = (JSON_MEDIA_TYPE,)
# Deeper than any lead form; a bound keeps a hostile key from building a tower of dictionaries.
MAX_FORM_KEY_DEPTH = 8
_BRACKETED_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


class WebhookBodyError(ValueError):
    """The body cannot be read as what its content type says: 400 at the door, nothing stored.

    ``code`` is the error code the API answers with; ``details`` never quotes a value (PII).
    """

    def __init__(self, message: str, *, code: str = "invalid_body", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


class WebhookMediaTypeError(WebhookBodyError):
    """A content type the receiver does not read (415)."""


def media_type_of(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == JSON_MEDIA_TYPE or (media_type.startswith("application/") and media_type.endswith("+json"))


def _utf8_text(raw_body: bytes, content_type: str) -> str:
    """The body as text: form bodies are stored as text and their values must be UTF-8."""
    _, params = parse_header_parameters(content_type or "")
    charset = (params.get("charset") or "utf-8").strip().lower()
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise WebhookBodyError(f"Send the form as UTF-8 (charset={charset} is not read).", details={"charset": charset})
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookBodyError(
            "The body is not valid UTF-8.", details={"reason": "encoding", "position": exc.start}
        ) from None
    if "\x00" in text:  # PostgreSQL text cannot hold NUL, and no lead field has one
        raise WebhookBodyError("The body holds a NUL byte.", details={"reason": "nul", "position": text.index("\x00")})
    return text


def _key_path(key: str) -> list[str]:
    """``answers[budget]`` / ``answers__budget`` → ["answers", "budget"]; ``tags[]`` → ["tags", ""].

    Brackets are what Make.com (and PHP-style form encoders) write; double underscores are
    Zapier's separator for nested fields. A key with an empty ``__`` segment stays as it is.
    """
    match = _BRACKETED_KEY.match(key)
    if match:
        return [match.group(1), *_BRACKET.findall(match.group(2))]
    if "__" in key:
        parts = key.split("__")
        if all(parts):
            return parts
    return [key]


def _as_list_if_indexed(node: Any) -> Any:
    """``{"0": a, "1": b}`` (from ``tags[0]`` / ``tags__0``) is the list ``[a, b]``, as JSON would send it."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _as_list_if_indexed(value)
        if node and all(key.isdigit() for key in node) and sorted(int(k) for k in node) == list(range(len(node))):
            return [node[str(index)] for index in range(len(node))]
    elif isinstance(node, list):
        return [_as_list_if_indexed(value) for value in node]
    return node


def form_fields_unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form fields back into the object a JSON sender would have posted.

    ``a[b][c]=1`` and ``a__b__c=1`` → ``{"a": {"b": {"c": "1"}}}``; ``tags[]=x&tags[]=y``,
    ``tags=x&tags=y`` and ``tags[0]=x&tags[1]=y`` → ``{"tags": ["x", "y"]}``; a key sent once
    holds a string. A key that is both a value and a group (``a=1&a[b]=2``) is refused.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _key_path(key)
        if len(path) > MAX_FORM_KEY_DEPTH:
            raise WebhookBodyError(
                f"The form key is nested more than {MAX_FORM_KEY_DEPTH} levels deep.", details={"key": key[:100]}
            )
        if "" in path[:-1]:
            raise WebhookBodyError("Only the last [] of a form key may be empty.", details={"key": key[:100]})
        append = path[-1] == ""
        if append:
            path = path[:-1]  # the bracket pattern guarantees a name before the first "["
        node = root
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _both_value_and_group(key)
            node = child
        leaf = path[-1]
        current = node.get(leaf)
        if current is None:
            node[leaf] = [value] if append else value
        elif isinstance(current, str):
            node[leaf] = [current, value]
        elif isinstance(current, list):  # lists are only ever made here, from repeated values
            current.append(value)
        else:
            raise _both_value_and_group(key)
    unflattened = _as_list_if_indexed(root)
    if not isinstance(unflattened, dict):
        # 0=a&1=b is a list, not a lead: refused as the JSON branch refuses a body that is no object.
        raise WebhookBodyError(
            "The form's top-level keys are all indexes (0=…&1=…): send the lead's fields by name, e.g. email=….",
            details={"reason": "not_an_object"},
        )
    return unflattened


def _both_value_and_group(key: str) -> WebhookBodyError:
    return WebhookBodyError(
        "The form sends a key both as a value and as a group of fields.", details={"key": key[:100]}
    )


def _max_fields() -> int | None:
    return settings.DATA_UPLOAD_MAX_NUMBER_FIELDS


class _RefuseFiles(FileUploadHandler):
    """A lead is text fields; the body is stored as text, so a file part is refused, not dropped."""

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        raise WebhookBodyError(
            "File parts are not read: send the lead's fields as plain form fields.",
            details={"key": str(field_name)[:100]},
        )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:  # pragma: no cover - never reached
        return None

    def file_complete(self, file_size: int) -> None:  # pragma: no cover - never reached
        return None


def _multipart_pairs(raw_body: bytes, content_type: str) -> list[tuple[str, str]]:
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(raw_body))}
    try:
        fields, _files = MultiPartParser(meta, io.BytesIO(raw_body), [_RefuseFiles()], encoding="utf-8").parse()
    except MultiPartParserError as exc:
        raise WebhookBodyError(f"The multipart body cannot be read ({exc}).", details={"reason": "multipart"}) from None
    except SuspiciousOperation:  # too many fields, or a header block over Django's limit
        raise WebhookBodyError(
            f"The multipart body has more than {_max_fields()} fields or oversized part headers.",
            details={"reason": "too_many_fields"},
        ) from None
    return [(key, value) for key, values in fields.lists() for value in values]


def webhook_body_parse(
    *, raw_body: bytes, content_type: str, accepted: tuple[str, ...] = RELAY_MEDIA_TYPES
) -> dict[str, Any]:
    """The object a body holds, read by its content type; the receivers and the worker share it,
    so an event is processed exactly as it was checked at the door.

    JSON must be one object of strict JSON: NaN, Infinity, numbers beyond a double and lone
    surrogates are refused (PostgreSQL's jsonb would refuse them later, after the 2xx). Form
    bodies (urlencoded or multipart) must be UTF-8; their flattened keys are unflattened
    (``form_fields_unflatten``).
    """
    media_type = media_type_of(content_type)
    if _is_json(media_type) and JSON_MEDIA_TYPE in accepted:
        # The same nesting limit as every JSON endpoint of the API (JSON_MAX_DEPTH), checked before
        # the sender is authenticated: a deep body costs every later walk over the stored event.
        limit = max_json_depth()
        if json_depth_exceeds(raw_body, limit):
            raise WebhookBodyError(
                f"The JSON body nests deeper than {limit} levels.", details={"reason": "too_deep", "limit": limit}
            )
        try:
            payload = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            raise WebhookBodyError(f"({exc})", code="parse_error", details={"position": exc.pos}) from None
        if not isinstance(payload, dict):
            raise WebhookBodyError(f"The body must be a JSON object, not a {type(payload).__name__}.")
        return payload
    if media_type == FORM_MEDIA_TYPE and FORM_MEDIA_TYPE in accepted:
        text = _utf8_text(raw_body, content_type)
        try:
            pairs = parse_qsl(
                text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=_max_fields()
            )
        except UnicodeDecodeError:
            raise WebhookBodyError(
                "A percent-escaped value is not valid UTF-8.", details={"reason": "encoding"}
            ) from None
        except ValueError:  # parse_qsl's "Max number of fields exceeded"
            raise WebhookBodyError(
                f"The form has more than {_max_fields()} fields.", details={"reason": "too_many_fields"}
            ) from None
        if any("\x00" in key or "\x00" in value for key, value in pairs):
            raise WebhookBodyError("A form field holds a NUL character.", details={"reason": "nul"})
        return form_fields_unflatten(pairs)
    if media_type == MULTIPART_MEDIA_TYPE and MULTIPART_MEDIA_TYPE in accepted:
        _utf8_text(raw_body, "")  # the parts' own charsets are not trusted: the stored text must be UTF-8
        pairs = _multipart_pairs(raw_body, content_type)
        if any("\x00" in key or "\x00" in value for key, value in pairs):
            raise WebhookBodyError("A form field holds a NUL character.", details={"reason": "nul"})
        return form_fields_unflatten(pairs)
    shown = media_type or "nothing"
    listed = " or ".join([", ".join(accepted[:-1]), accepted[-1]] if len(accepted) > 1 else accepted)
    raise WebhookMediaTypeError(
        f"Send Content-Type: {listed}, not {shown}.",
        code="unsupported_media_type",
        details={"accepted": list(accepted), "received": media_type[:100]},
    )


# --- Receiving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    event_id: int
    created: bool


def unwrap_relayed(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Make.com scenarios sometimes wrap the Google body in one envelope key."""
    if "user_column_data" not in payload:
        for key in ("data", "body", "lead", "payload"):
            inner = payload.get(key)
            if isinstance(inner, dict) and "user_column_data" in inner:
                return inner
    return payload


def webhook_event_dedupe_key(*, payload: Mapping[str, Any], headers: Mapping[str, str], raw_body: bytes) -> str:
    """The same lead (its lead_id), else the same message (webhook-id), else the same bytes."""
    lead_id = unwrap_relayed(payload).get("lead_id")
    if isinstance(lead_id, (str, int)) and str(lead_id).strip():
        key = f"lead:{str(lead_id).strip()}"
    elif headers.get("webhook-id"):
        key = f"msg:{headers['webhook-id']}"
    else:
        return f"sha256:{hashlib.sha256(raw_body).hexdigest()}"
    return key if len(key) <= 255 else f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@cache
def _insert_event_sql() -> str:
    """One event's INSERT, a duplicate (source, dedupe_key) answered by no row instead of an error.

    Written once from the model's names: ``WebhookEvent.objects.create`` compiles the same
    statement on every request, and on the receiver that compile cost more CPU than the rest of
    the request's own code (``make bench``, bench/bench_webhooks.py). ``ON CONFLICT DO NOTHING``
    also makes a repeat cost no error and no savepoint.
    """
    meta = WebhookEvent._meta
    column = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = ", ".join(column[name] for name in _INSERTED_FIELDS)
    values = ", ".join("%s::jsonb" if name == "headers" else "%s" for name in _INSERTED_FIELDS)
    return (
        f"INSERT INTO {meta.db_table} ({columns}) VALUES ({values})"  # noqa: S608 - names from the model
        f" ON CONFLICT ({column['source']}, {column['dedupe_key']}) DO NOTHING RETURNING {column['id']}"
    )


# Every column without a database default, in the statement's order; the last three take the
# model's own defaults (a new event is received, never attempted, without error).
_DEFAULTED_FIELDS = ("status", "attempts", "last_error")
_INSERTED_FIELDS = (
    "source",
    "dedupe_key",
    "raw_body",
    "content_type",
    "headers",
    "received_at",
    *_DEFAULTED_FIELDS,
)


def _event_insert(fields: dict[str, Any]) -> int | None:
    """Insert the event; its id, or None when the source already holds its dedupe key."""
    if connection.vendor != "postgresql":  # the embedded default (SQLite): the ORM, a duplicate raises
        try:
            with transaction.atomic():  # a savepoint: a duplicate must not break the caller's transaction
                return WebhookEvent.objects.create(**fields).pk
        except IntegrityError:
            return None
    defaults = {
        field.name: field.get_default()
        for field in WebhookEvent._meta.concrete_fields
        if field.name in _DEFAULTED_FIELDS
    }
    row = {
        **defaults,
        **fields,
        "source": fields["source"].pk,
        "headers": orjson.dumps(fields["headers"]).decode(),
    }
    with prepared_cursor() as cursor:
        cursor.execute(_insert_event_sql(), [row[name] for name in _INSERTED_FIELDS])
        inserted = cursor.fetchone()
    return inserted[0] if inserted else None


def webhook_event_ingest(
    *,
    source: WebhookSource,
    raw_body: bytes,
    headers: Mapping[str, str],
    payload: Mapping[str, Any],
    content_type: str = JSON_MEDIA_TYPE,
) -> IngestResult:
    """Store the event (or find its first copy) and enqueue processing once it is committed.

    ``payload`` is what ``webhook_body_parse`` read from ``raw_body``; the body itself is what is
    kept, with its ``content_type``, and read again the same way when the event is processed.
    """
    dedupe_key = webhook_event_dedupe_key(payload=payload, headers=headers, raw_body=raw_body)
    event_id = _event_insert(
        {
            "source": source,
            "dedupe_key": dedupe_key,
            "raw_body": raw_body.decode("utf-8"),
            "content_type": content_type[:255],
            "headers": {name: headers[name][:500] for name in STORED_HEADERS if headers.get(name)},
            "received_at": timezone.now(),
        }
    )
    if event_id is None:
        first = WebhookEvent.objects.filter(source=source, dedupe_key=dedupe_key).values_list("pk", flat=True).first()
        if first is None:  # the first copy is gone again (deleted in between): a bug or an operator, surface it
            raise RuntimeError(f"webhook event {dedupe_key!r} of source {source.pk} conflicted but is not stored")
        WEBHOOK_EVENTS.labels(source.name, "duplicate").inc()
        return IngestResult(event_id=first, created=False)
    # After commit (at once in autocommit), so a worker never looks for a row it cannot see yet.
    transaction.on_commit(lambda: enqueue_event_processing(event_id=event_id, wait=False))
    WEBHOOK_EVENTS.labels(source.name, "accepted").inc()
    return IngestResult(event_id=event_id, created=True)


def webhook_event_record_refusal(*, source_label: str, outcome: str) -> None:
    """Count a refused request (unauthorized / invalid); nothing else is kept of it."""
    WEBHOOK_EVENTS.labels(source_label, outcome).inc()


# --- Enqueueing, never blocking on the broker ------------------------------------------------


# After a publish fails, skip publishing for a while: the sweeper enqueues from the database.
# Without it every message during a broker outage would pay the connection timeout (~2 s).
broker_circuit = CircuitBreaker(pause_seconds=30.0)


# The webhooks tasks' registered names (webhooks/tasks.py names them with these): services queue
# work by name through _publish, the app's one seam to the broker, and never import the tasks.
PROCESS_EVENTS_TASK = "webhooks.tasks.process_webhook_events"
DELIVER_LEAD_TASK = "webhooks.tasks.deliver_lead"


def _publish(task_name: str, *args: Any, countdown: float | None = None, first: bool = False) -> bool:
    """Publish without waiting on a broker that is down; ``first``: ahead of the default priority."""
    if broker_circuit.is_open():
        return False
    # Only when asked: an explicit priority=None would not fall back to the default, but to the top.
    options = {"priority": setting("LEAD_TASK_PRIORITY", 0)} if first else {}
    try:
        task_named(task_name).apply_async(args=args, countdown=countdown, retry=False, **options)
    except Exception as exc:  # any broker failure: the row is committed and the sweeper will retry
        broker_circuit.trip(exc)
        logger.warning(
            "broker unavailable; left for the sweeper",
            extra={"task": task_name, "error_class": type(exc).__name__},
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
                _publish(PROCESS_EVENTS_TASK, batch, first=True)
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
    published = 0
    for start in range(0, len(event_ids), EVENTS_PER_MESSAGE):
        chunk = event_ids[start : start + EVENTS_PER_MESSAGE]
        if not _publish(PROCESS_EVENTS_TASK, chunk, first=True):
            break  # the broker is down: the sweeper will find the rest
        published += len(chunk)
    return published


# Leads whose deliveries jump the queue: "urgent and high go out at once".
FIRST_PRIORITIES = frozenset({Priority.URGENT, Priority.HIGH})


def enqueue_delivery(*, delivery_id: int, lead_priority: str, countdown: float | None = None) -> bool:
    return _publish(DELIVER_LEAD_TASK, delivery_id, countdown=countdown, first=lead_priority in FIRST_PRIORITIES)
