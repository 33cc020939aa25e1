"""From event to routed lead: parse and normalize, route by the ordered rules, process, sweep."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign, Platform
from conversions.hashing import phone_calling_code, phone_e164, phone_region_for_calling_code
from webhooks.metrics import WEBHOOK_EVENTS, WEBHOOK_LAG
from webhooks.models import (
    Destination,
    Lead,
    LeadDelivery,
    Priority,
    RoutingRule,
    WebhookEvent,
)
from webhooks.services.common import INT64_MAX, INT64_MIN, LeadPayloadError, setting
from webhooks.services.deliveries import lead_delivery_awaits_digest
from webhooks.services.receiving import (
    WebhookBodyError,
    enqueue_delivery,
    enqueue_event_processing,
    enqueue_events_processing,
    unwrap_relayed,
    webhook_body_parse,
)
from webhooks.services.sources import shared_version

logger = logging.getLogger(__name__)


# --- Parsing and normalizing -----------------------------------------------------------------


def phone_to_e164(raw: str, *, default_country_code: str = "1") -> str:
    """The number in E.164, or "" when it cannot be read as a valid number.

    A number without ``+`` or ``00`` is taken as national in the main country of
    ``default_country_code`` (a calling code: "1" is the NANP, "44" the UK); the
    numbering plan itself is libphonenumber's, shared with conversion hashing.
    """
    return phone_e164(raw or "", region=phone_region_for_calling_code(default_country_code))


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
    gbraid: str = ""
    wbraid: str = ""
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
    "gbraid": ("gbraid",),
    "wbraid": ("wbraid",),
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
# Keys whose object holds the custom answers one level down.
_ANSWER_GROUPS = {"answers", "custom_answers"}
_NOT_ANSWERS = {"google_key", "api_version", "user_column_data", "lead_stage", "data", "body", "payload"}


def lead_data_from_payload(payload: Mapping[str, Any]) -> LeadData:
    """Read a flat Make.com/Zapier object or a (relayed) Google lead form body."""
    if not isinstance(payload, Mapping):
        raise LeadPayloadError("The body is not a JSON object.")
    body = unwrap_relayed(payload)
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
            if lowered in _ANSWER_GROUPS and isinstance(value, Mapping):
                # {"answers": {"budget": ...}} in JSON, answers[budget] / answers__budget in a form:
                # the form's answers themselves, which routing names as answers.<question>.
                for question, answer in value.items():
                    if not str(question).strip().lower().endswith("_key"):
                        answers.setdefault(str(question)[:100], answer)
            elif lowered not in used_keys and lowered not in _NOT_ANSWERS and not lowered.endswith("_key"):
                answers[str(key)[:100]] = value

    full_name = _text(values.get("full_name"))
    if not full_name:
        full_name = " ".join(_text(values.get(k)) for k in ("first_name", "last_name") if values.get(k)).strip()
    phone_raw = _text(values.get("phone"), 64)
    data = LeadData(
        external_lead_id=_text(values.get("lead_id")),
        full_name=full_name,
        email=_text(values.get("email"), 254).lower(),
        phone=phone_to_e164(phone_raw, default_country_code=str(setting("LEADS_DEFAULT_PHONE_COUNTRY_CODE", "1"))),
        phone_raw=phone_raw,
        gclid=_text(values.get("gclid")),
        gbraid=_text(values.get("gbraid")),
        wbraid=_text(values.get("wbraid")),
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
LEAD_FIELDS: dict[str, Callable[[Lead], Any]] = {
    "email": lambda lead: lead.email,
    "email_domain": lambda lead: lead.email.rpartition("@")[2] if "@" in lead.email else "",
    "phone": lambda lead: lead.phone,
    "phone_country": lambda lead: phone_calling_code(lead.phone),
    "full_name": lambda lead: lead.full_name,
    "gclid": lambda lead: lead.gclid,
    "campaign_id": lambda lead: lead.campaign_external_id,
    "campaign_name": lambda lead: lead.campaign.name if lead.campaign is not None else "",
    "form_id": lambda lead: lead.form_id,
    "adgroup_id": lambda lead: lead.adgroup_id,
    "creative_id": lambda lead: lead.creative_id,
    "asset_group_id": lambda lead: lead.asset_group_id,
    "is_test": lambda lead: lead.is_test,
    "source": lambda lead: lead.source.name if lead.source_id else "",
}


@dataclass(frozen=True)
class CompiledCondition:
    field: str
    op: str
    value: Any
    pattern: re.Pattern[str] | None = None


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


DEFAULT_DESTINATION_NAME = "Operators (email)"
DEFAULT_RULE_NAME = "Every other lead (default route)"


def routing_default_ensure(*, recipients: Iterable[str]) -> RoutingRule | None:
    """On a fresh install (no rule at all), route every lead to the operators by email, so that no
    lead is accepted and goes nowhere. An install with rules is left as its operators made it."""
    if RoutingRule.objects.exists():
        return None
    with transaction.atomic():
        destination, _ = Destination.objects.get_or_create(
            name=DEFAULT_DESTINATION_NAME,
            defaults={"kind": Destination.Kind.EMAIL, "recipients": ", ".join(dict.fromkeys(recipients))},
        )
        rule = RoutingRule.objects.create(name=DEFAULT_RULE_NAME, position=1000, conditions=[])
        rule.destinations.set([destination])
    routing_rules_invalidate()
    return rule


def routing_rules_invalidate() -> None:
    """Tell every process (web, workers) to reload the rules: a new token in the shared cache."""
    cache.set(_ROUTING_VERSION_KEY, uuid.uuid4().hex, timeout=None)


def routing_rules_active() -> tuple[CompiledRule, ...]:
    """Active rules in order, held in process memory; one cache read per call, no query."""
    version = shared_version(_ROUTING_VERSION_KEY)
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
            payload = webhook_body_parse(raw_body=event.raw_body.encode("utf-8"), content_type=event.content_type)
            data = lead_data_from_payload(payload)
        except (ValueError, LeadPayloadError) as exc:
            event.status = WebhookEvent.Status.FAILED
            # Both kinds of message name fields or positions, never values.
            event.last_error = (
                str(exc)[:500] if isinstance(exc, (LeadPayloadError, WebhookBodyError)) else "The body cannot be read."
            )
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
        older_than_seconds = setting("WEBHOOK_SWEEP_AFTER_SECONDS", 60)
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
