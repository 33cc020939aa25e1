"""Writes and workflows of the conversions app: ingest, upload, retry, service keys.

Ingest hashes every personal identifier before anything is stored and stores a batch whole or
not at all. Upload claims due rows and commits the claim before the network call, so a worker
that dies mid-call leaves rows "uploading" with a lease; the next run resends them with the same
order_id / event_id and the platform dedupes, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Platform
from conversions import hashing, selectors
from conversions.metrics import CONVERSION_UPLOADS
from conversions.models import Conversion, ConversionAction, IngestRequest, ServiceApiKey, default_service_scopes
from platforms.base import (
    AuthError,
    ClickConversion,
    ConversionEvent,
    PermanentError,
    PlatformError,
    RateLimitedError,
    RowOutcome,
    TransientError,
    UploadResult,
    units_to_micros,
)
from platforms.registry import platform_for_account

logger = logging.getLogger(__name__)

# Per request, as the platforms allow (Google TOO_MANY_CONVERSIONS_IN_REQUEST; Meta's limit).
MAX_BATCH = {Platform.GOOGLE: 2000, Platform.META: 1000}
# Meta refuses a whole request when one event is older than this.
META_MAX_EVENT_AGE = timedelta(days=7)
# Expire a little early rather than send an event that turns 7 days old on the way.
META_EXPIRY_MARGIN = timedelta(minutes=1)
# Google Ads refuses click conversions more than 90 days old (the longest click-through window).
GOOGLE_MAX_CONVERSION_AGE = timedelta(days=90)
# Clocks of senders drift; an event a few seconds "in the future" is not refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
META_ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
CONSENT_VALUES = {"granted": "GRANTED", "denied": "DENIED"}
SERVICE_KEY_PREFIX = "ibvi_sk_"
UPLOAD_KICK_CACHE_KEY = "conversions:upload-requested"
UPLOAD_KICK_DEBOUNCE_SECONDS = 5
# last_used_at is a hint for operators, not an audit log: one write a minute per key at most.
SERVICE_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def upload_max_attempts() -> int:
    return int(getattr(settings, "CONVERSIONS_UPLOAD_MAX_ATTEMPTS", 8))


def upload_lease_seconds() -> int:
    return int(getattr(settings, "CONVERSIONS_UPLOAD_LEASE_SECONDS", 600))


def retry_base_seconds() -> float:
    return float(getattr(settings, "CONVERSIONS_RETRY_BASE_SECONDS", 30))


# --- Errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    message: str


class IngestValidationError(Exception):
    """One or more items are invalid; nothing of the request was stored."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used with a different body."""


# --- Ingestion ------------------------------------------------------------------------------------


@dataclass
class IngestOutcome:
    """The stored record of every item, in request order, and which ones were already known."""

    conversions: list[Conversion]
    duplicates: list[bool]

    @property
    def created_count(self) -> int:
        return sum(1 for duplicate in self.duplicates if not duplicate)


@dataclass
class _Prepared:
    dedupe_key: str
    row: dict[str, Any]


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _body_fingerprint(platform: str, items: Sequence[dict[str, Any]]) -> str:
    canonical = json.dumps([platform, list(items)], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find_action(platform: str, reference: Any) -> ConversionAction | str:
    """The active action, or the reason it cannot be used."""
    action = selectors.conversion_action_find(platform=platform, reference=str(reference or ""))
    if action is None:
        return "No conversion action with this id or resource name is configured; see /api/v1/conversion-actions/."
    if not action.is_active or not action.account.is_active:
        return "This conversion action is inactive."
    return action


def _action_finder(platform: str) -> Any:
    """``_find_action`` remembered for one request: a batch usually names one action 2,000 times."""
    memo: dict[str, ConversionAction | str] = {}

    def find(reference: Any) -> ConversionAction | str:
        key = str(reference or "")
        if key not in memo:
            memo[key] = _find_action(platform, key)
        return memo[key]

    return find


def _prepare_google(
    index: int, item: dict[str, Any], errors: list[ItemError], now: datetime, find_action: Any
) -> _Prepared | None:
    start = len(errors)
    found = find_action(item.get("conversion_action"))
    if isinstance(found, str):
        errors.append(ItemError(index, "conversion_action", found))
    clicks = [(name, str(item.get(name) or "").strip()) for name in ("gclid", "gbraid", "wbraid")]
    given = [(name, value) for name, value in clicks if value]
    if len(given) > 1:
        errors.append(ItemError(index, "gclid", "Give at most one of gclid, gbraid or wbraid."))
    happened: datetime = item["conversion_date_time"]
    if happened > now + FUTURE_TOLERANCE:
        errors.append(ItemError(index, "conversion_date_time", "The conversion cannot be in the future."))
    elif happened < now - GOOGLE_MAX_CONVERSION_AGE:
        errors.append(
            ItemError(
                index,
                "conversion_date_time",
                "Google Ads accepts click conversions up to 90 days old; this one is older.",
            )
        )
    user = item.get("user") or {}
    hashed_email = hashed_phone = ""
    if user.get("email"):
        try:
            hashed_email = hashing.google_hash_email(user["email"])
        except hashing.IdentifierError as exc:
            errors.append(ItemError(index, "user.email", str(exc)))
    if user.get("phone"):
        try:
            hashed_phone = hashing.google_hash_phone(user["phone"], country=user.get("country") or "")
        except hashing.IdentifierError as exc:
            errors.append(ItemError(index, "user.phone", str(exc)))
    if not given and not (hashed_email or hashed_phone) and len(errors) == start:
        # Without a click, Google matches an enhanced conversion for leads on the hashed identifiers.
        errors.append(
            ItemError(
                index,
                "gclid",
                "Give a click id (gclid, gbraid or wbraid), or user.email and/or user.phone for an "
                "enhanced conversion for leads; this conversion has neither.",
            )
        )
    if len(errors) > start or isinstance(found, str):
        return None
    action = found
    click_type, click_id = given[0] if given else ("", "")
    value: Decimal | None = item.get("conversion_value")
    currency = (item.get("currency_code") or (action.account.currency_code if value is not None else "")).upper()
    order_id = (item.get("order_id") or "").strip()
    consent = item.get("consent") or {}
    if order_id:
        # Google keeps one conversion per order id and action.
        key = _dedupe_key("google", action.account.external_id, action.external_id, "order", order_id)
    elif click_type:
        # Google's own rule without an order id: one conversion per click, action and moment.
        key = _dedupe_key(
            "google", action.account.external_id, action.external_id, click_type, click_id, int(happened.timestamp())
        )
    else:
        # Identifier-only (enhanced conversions for leads): the same person, action and moment.
        key = _dedupe_key(
            "google",
            action.account.external_id,
            action.external_id,
            "identifiers",
            hashed_email,
            hashed_phone,
            int(happened.timestamp()),
        )
    payload = {
        **({click_type: click_id} if click_type else {}),
        "conversion_date_time": happened.isoformat(),
        "conversion_value": str(value) if value is not None else None,
        "currency_code": currency,
        "order_id": order_id,
        "hashed_email": hashed_email,
        "hashed_phone": hashed_phone,
        "consent_ad_user_data": CONSENT_VALUES.get(str(consent.get("ad_user_data") or "").lower(), ""),
        "consent_ad_personalization": CONSENT_VALUES.get(str(consent.get("ad_personalization") or "").lower(), ""),
    }
    row = {
        "platform": Platform.GOOGLE,
        "account_id": action.account_id,
        "action_id": action.pk,
        "order_id": order_id,
        "click_id_type": click_type,
        "hashed_email": hashed_email,
        "hashed_phone": hashed_phone,
        "value_micros": units_to_micros(value) if value is not None else None,
        "currency_code": currency,
        "occurred_at": happened,
        "payload": payload,
    }
    return _Prepared(key, row)


_META_USER_FIELDS = {
    "email": "em",
    "phone": "ph",
    "first_name": "fn",
    "last_name": "ln",
    "city": "ct",
    "state": "st",
    "zip": "zp",
    "country": "country",
    "date_of_birth": "db",
    "gender": "ge",
    "external_id": "external_id",
}
_META_PLAIN_USER_FIELDS = ("client_ip_address", "client_user_agent", "fbc", "fbp")


def _prepare_meta(
    index: int,
    item: dict[str, Any],
    errors: list[ItemError],
    now: datetime,
    default_action: ConversionAction | None,
    find_action: Any,
) -> _Prepared | None:
    start = len(errors)
    reference = item.get("conversion_action") or item.get("pixel_id")
    found: ConversionAction | str
    if reference:
        found = find_action(reference)
    elif default_action is not None:
        found = default_action
    else:
        found = "Name the pixel (conversion_action): more or fewer than one Meta pixel is configured."
    if isinstance(found, str):
        errors.append(ItemError(index, "conversion_action", found))
    event_time: int = item["event_time"]
    try:
        happened = datetime.fromtimestamp(event_time, tz=UTC)
    except (OverflowError, OSError, ValueError):  # far outside any calendar a platform uses
        happened = None
    if happened is None:
        errors.append(ItemError(index, "event_time", "Not a usable unix time (seconds since 1970)."))
    elif happened < now - META_MAX_EVENT_AGE + META_EXPIRY_MARGIN:
        errors.append(ItemError(index, "event_time", "Meta accepts events up to 7 days old; this one is older."))
    elif happened > now + FUTURE_TOLERANCE:
        errors.append(ItemError(index, "event_time", "The event cannot be in the future."))
    action_source = item.get("action_source") or ""
    if action_source not in META_ACTION_SOURCES:
        errors.append(ItemError(index, "action_source", f"Use one of: {', '.join(sorted(META_ACTION_SOURCES))}."))
    user = item.get("user") or {}
    user_data: dict[str, str] = {}
    country = str(user.get("country") or "")
    for name, meta_key in _META_USER_FIELDS.items():
        raw = user.get(name)
        if raw in (None, ""):
            continue
        try:
            user_data[meta_key] = hashing.meta_hash(meta_key, str(raw), country=country)
        except hashing.IdentifierError as exc:
            errors.append(ItemError(index, f"user.{name}", str(exc)))
    for name in _META_PLAIN_USER_FIELDS:
        if user.get(name):
            user_data[name] = str(user[name]).strip()
    if action_source == "website":
        # Meta requires both for website events.
        if not user_data.get("client_user_agent"):
            errors.append(ItemError(index, "user.client_user_agent", "Required when action_source is website."))
        if not item.get("event_source_url"):
            errors.append(ItemError(index, "event_source_url", "Required when action_source is website."))
    if not any(k in user_data for k in ("em", "ph", "external_id", "fbc", "fbp", "client_ip_address")):
        errors.append(ItemError(index, "user", "Give at least one customer identifier (email, phone, external_id, …)."))
    if len(errors) > start or isinstance(found, str):
        return None
    action = found
    event_name = item["event_name"].strip()
    custom = item.get("custom_data") or {}
    value: Decimal | None = custom.get("value")
    currency = (custom.get("currency") or (action.account.currency_code if value is not None else "")).upper()
    order_id = (custom.get("order_id") or "").strip()
    event_id = (item.get("event_id") or "").strip()
    if event_id:
        key = _dedupe_key("meta", action.external_id, event_name, event_id)
    else:
        anchor = user_data.get("fbc") or user_data.get("fbp") or user_data.get("em") or user_data.get("external_id")
        anchor = anchor or user_data.get("ph") or user_data.get("client_ip_address")
        key = _dedupe_key("meta", action.external_id, event_name, anchor, event_time)
        # Meta dedupes on event_name + event_id only, so a resend must carry an id too.
        event_id = f"ibvi-{key[:32]}"
    custom_data: dict[str, Any] = {}
    if value is not None:
        custom_data["value"] = str(value)
        custom_data["currency"] = currency.lower()
    if order_id:
        custom_data["order_id"] = order_id
    payload = {
        "event_name": event_name,
        "event_time": event_time,
        "event_id": event_id,
        "action_source": action_source,
        "event_source_url": item.get("event_source_url") or "",
        "user_data": user_data,
        "custom_data": custom_data,
    }
    row = {
        "platform": Platform.META,
        "account_id": action.account_id,
        "action_id": action.pk,
        "order_id": order_id,
        "event_name": event_name,
        "event_id": event_id,
        "click_id_type": "fbc" if user_data.get("fbc") else "",
        "hashed_email": user_data.get("em", ""),
        "hashed_phone": user_data.get("ph", ""),
        "value_micros": units_to_micros(value) if value is not None else None,
        "currency_code": currency,
        "occurred_at": happened,
        "payload": payload,
    }
    return _Prepared(key, row)


def _ingest(
    *,
    platform: str,
    items: Sequence[dict[str, Any]],
    prepare: Any,
    idempotency_key: str,
    source: str,
) -> IngestOutcome:
    fingerprint = _body_fingerprint(platform, items) if idempotency_key else ""
    if idempotency_key:
        earlier = _replay(platform=platform, key=idempotency_key, fingerprint=fingerprint)
        if earlier is not None:
            return earlier
    now = timezone.now()
    errors: list[ItemError] = []
    prepared = [prepare(index, item, errors, now) for index, item in enumerate(items)]
    if errors:
        raise IngestValidationError(errors)
    keys = [p.dedupe_key for p in prepared]
    try:
        with transaction.atomic():
            known = selectors.conversions_by_dedupe_keys(keys=keys)
            duplicates: list[bool] = []
            new_rows: dict[str, Conversion] = {}
            for p in prepared:
                if p.dedupe_key in known or p.dedupe_key in new_rows:
                    duplicates.append(True)
                    continue
                duplicates.append(False)
                new_rows[p.dedupe_key] = Conversion(
                    dedupe_key=p.dedupe_key, source=source[:150], next_attempt_at=now, **p.row
                )
            if new_rows:
                created = _insert_new(new_rows)
                known = selectors.conversions_by_dedupe_keys(keys=keys)
                # Rows a concurrent request committed first are its own: here they are repeats.
                seen: set[str] = set()
                for position, key in enumerate(keys):
                    duplicates[position] = key in seen or key not in created
                    seen.add(key)
            conversions = [known[key] for key in keys]
            if idempotency_key:
                IngestRequest.objects.create(
                    platform=platform,
                    key=idempotency_key,
                    fingerprint=fingerprint,
                    conversion_ids=[c.pk for c in conversions],
                )
    except IntegrityError:
        # Another request with the same Idempotency-Key committed first: answer as it did.
        earlier = _replay(platform=platform, key=idempotency_key, fingerprint=fingerprint) if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    logger.info(
        "conversions ingested",
        extra={"platform": platform, "items": len(items), "conversions_created": duplicates.count(False)},
    )
    return IngestOutcome(conversions=conversions, duplicates=duplicates)


def _insert_new(rows: dict[str, Conversion]) -> set[str]:
    """Insert ``rows`` (by dedupe key); the keys this call created.

    One bulk insert in a savepoint; when a concurrent request committed some of the same keys
    first (PostgreSQL makes the second insert wait for the first, then fail), the rows go in one
    by one and those already there are left to their first writer, so exactly one request
    answers "created" for a key.
    """
    try:
        with transaction.atomic():
            Conversion.objects.bulk_create(rows.values(), batch_size=500)
        return set(rows)
    except IntegrityError:
        pass
    created: set[str] = set()
    for key, row in rows.items():
        row.pk = None
        row._state.adding = True
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            if not Conversion.objects.filter(dedupe_key=key).exists():
                raise  # another constraint failed: a bug, not a race
            continue
        created.add(key)
    return created


def _replay(*, platform: str, key: str, fingerprint: str) -> IngestOutcome | None:
    earlier = IngestRequest.objects.filter(platform=platform, key=key).first()
    if earlier is None:
        return None
    if earlier.fingerprint != fingerprint:
        raise IdempotencyKeyReused(key)
    conversions = selectors.conversions_by_ids(ids=list(earlier.conversion_ids))
    return IngestOutcome(conversions=conversions, duplicates=[True] * len(conversions))


def conversions_ingest_google(
    *, items: Sequence[dict[str, Any]], idempotency_key: str = "", source: str = ""
) -> IngestOutcome:
    """Store Google click conversions (validated shapes) with identifiers hashed; idempotent.

    Raises IngestValidationError naming every bad item, or IdempotencyKeyReused.
    """
    find_action = _action_finder(Platform.GOOGLE)

    def prepare(index: int, item: dict[str, Any], errors: list[ItemError], now: datetime) -> _Prepared | None:
        return _prepare_google(index, item, errors, now, find_action)

    return _ingest(
        platform=Platform.GOOGLE, items=items, prepare=prepare, idempotency_key=idempotency_key, source=source
    )


def conversions_ingest_meta(
    *, items: Sequence[dict[str, Any]], idempotency_key: str = "", source: str = ""
) -> IngestOutcome:
    """Store Meta Conversions API events (validated shapes) with identifiers hashed; idempotent."""
    default_action = selectors.meta_default_action()
    find_action = _action_finder(Platform.META)

    def prepare(index: int, item: dict[str, Any], errors: list[ItemError], now: datetime) -> _Prepared | None:
        return _prepare_meta(index, item, errors, now, default_action, find_action)

    return _ingest(platform=Platform.META, items=items, prepare=prepare, idempotency_key=idempotency_key, source=source)


def conversions_request_upload() -> None:
    """Ask a worker to upload soon; at most one request per few seconds, never failing the caller.

    Beat runs the upload every minute anyway, so a lost message only delays the upload.
    """
    if not getattr(settings, "CONVERSIONS_UPLOAD_ON_INGEST", True):
        return
    if not cache.add(UPLOAD_KICK_CACHE_KEY, 1, timeout=UPLOAD_KICK_DEBOUNCE_SECONDS):
        return
    from conversions.tasks import upload_pending  # tasks import services; import here to keep that one-way

    def publish() -> None:
        try:
            upload_pending.delay()
        except Exception:
            logger.warning("could not enqueue the conversion upload; beat will run it", exc_info=True)

    transaction.on_commit(publish)


# --- Upload -----------------------------------------------------------------------------------------


@dataclass
class UploadSummary:
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def count(self, platform: str, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] += n
            CONVERSION_UPLOADS.labels(platform=platform, outcome=outcome).inc(n)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, **dict(self.outcomes)}


def conversions_expire_stale(*, now: datetime, summary: UploadSummary | None = None) -> int:
    """Meta events past 7 days can never be sent; one of them would sink a whole request."""
    expired = Conversion.objects.filter(
        platform=Platform.META,
        status=Conversion.Status.PENDING,
        occurred_at__lt=now - META_MAX_EVENT_AGE + META_EXPIRY_MARGIN,
    ).update(
        status=Conversion.Status.EXPIRED,
        next_attempt_at=None,
        last_error="Older than Meta's 7-day limit before it could be sent.",
        updated_at=now,
    )
    if summary is not None:
        summary.count(Platform.META, "expired", expired)
    return expired


def conversions_reclaim_stale_claims(*, now: datetime, summary: UploadSummary | None = None) -> int:
    """Rows left "uploading" past the lease belong to a worker that died mid-upload: send again.

    They may already be at the platform; the resend carries the same order_id / event_id (or
    click and time), so the platform keeps one copy and answers "already exists".
    """
    reclaimed = given_up = 0
    for platform in (Platform.GOOGLE, Platform.META):
        stale = Conversion.objects.filter(
            platform=platform,
            status=Conversion.Status.UPLOADING,
            claimed_at__lt=now - timedelta(seconds=upload_lease_seconds()),
        )
        failed = stale.filter(attempts__gte=upload_max_attempts()).update(
            status=Conversion.Status.FAILED,
            claimed_at=None,
            last_error="Interrupted during upload too many times; gave up.",
            updated_at=now,
        )
        resent = stale.update(
            status=Conversion.Status.PENDING,
            claimed_at=None,
            next_attempt_at=now,
            last_error="An upload was interrupted before its result was recorded; sending again.",
            updated_at=now,
        )
        if summary is not None:
            summary.count(platform, "failed", failed)
            summary.outcomes["reclaimed"] += resent
        reclaimed += resent
        given_up += failed
    if reclaimed or given_up:
        logger.warning("reclaimed interrupted conversion uploads", extra={"reclaimed": reclaimed, "failed": given_up})
    return reclaimed


def _claim(*, platform: str, account_id: int, action_id: int, limit: int, now: datetime) -> list[Conversion]:
    """Take up to ``limit`` due rows of one group and commit the claim before any network call.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent uploaders take disjoint rows. SQLite has
    no row locks; its transactions here start IMMEDIATE (settings), which serializes claims.
    Either way the status guard in the UPDATE keeps a row from being claimed twice.
    """
    with transaction.atomic():
        due = Conversion.objects.filter(
            status=Conversion.Status.PENDING,
            next_attempt_at__lte=now,
            platform=platform,
            account_id=account_id,
            action_id=action_id,
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:limit])
        if not ids:
            return []
        Conversion.objects.filter(id__in=ids, status=Conversion.Status.PENDING).update(
            status=Conversion.Status.UPLOADING,
            claimed_at=now,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            updated_at=now,
        )
    rows = Conversion.objects.select_related("account", "action").filter(
        id__in=ids, status=Conversion.Status.UPLOADING, claimed_at=now
    )
    return sorted(rows, key=lambda c: (c.occurred_at, c.pk))


def _click_conversion(conversion: Conversion) -> ClickConversion:
    payload = conversion.payload
    value = payload.get("conversion_value")
    return ClickConversion(
        conversion_action_id=conversion.action.external_id,
        conversion_date_time=datetime.fromisoformat(payload["conversion_date_time"]),
        gclid=payload.get("gclid", ""),
        gbraid=payload.get("gbraid", ""),
        wbraid=payload.get("wbraid", ""),
        conversion_value=Decimal(value) if value is not None else None,
        currency_code=payload.get("currency_code", ""),
        order_id=payload.get("order_id", ""),
        hashed_email=payload.get("hashed_email", ""),
        hashed_phone=payload.get("hashed_phone", ""),
        consent_ad_user_data=payload.get("consent_ad_user_data", ""),
        consent_ad_personalization=payload.get("consent_ad_personalization", ""),
    )


def _conversion_event(conversion: Conversion) -> ConversionEvent:
    payload = conversion.payload
    custom = dict(payload.get("custom_data") or {})
    if "value" in custom:
        custom["value"] = Decimal(custom["value"])
    return ConversionEvent(
        event_name=payload["event_name"],
        event_time=int(payload["event_time"]),
        event_id=payload["event_id"],
        action_source=payload["action_source"],
        event_source_url=payload.get("event_source_url", ""),
        user_data=dict(payload.get("user_data") or {}),
        custom_data=custom,
    )


def _claimed(rows: Iterable[Conversion], claimed_at: datetime) -> Any:
    """Only rows still held by this claim: a row reclaimed by another worker is not overwritten."""
    return Conversion.objects.filter(
        id__in=[r.pk for r in rows], status=Conversion.Status.UPLOADING, claimed_at=claimed_at
    )


def _retry_delay_seconds(attempts: int, retry_after: float = 0.0) -> float:
    backoff = retry_base_seconds() * 2 ** max(attempts - 1, 0)
    # Full jitter keeps many rows that failed together from coming back together.
    delay = max(backoff * random.uniform(0.5, 1.0), retry_after)
    return min(delay, settings.TASK_MAX_RETRY_DELAY_SECONDS)


def _retry_later(
    rows: Sequence[Conversion],
    claimed_at: datetime,
    error: str,
    summary: UploadSummary,
    *,
    retry_after: float = 0.0,
    count_attempt: bool = True,
    outcome: str = "retry",
) -> None:
    now = timezone.now()
    by_attempts: dict[int, list[Conversion]] = defaultdict(list)
    for row in rows:
        by_attempts[row.attempts].append(row)
    platform = rows[0].platform
    for attempts, group in by_attempts.items():
        if count_attempt and attempts >= upload_max_attempts():
            done = _claimed(group, claimed_at).update(
                status=Conversion.Status.FAILED, claimed_at=None, last_error=error[:2000], updated_at=now
            )
            summary.count(platform, "failed", done)
            continue
        delay = _retry_delay_seconds(attempts, retry_after) if count_attempt else retry_after
        changes: dict[str, Any] = {
            "status": Conversion.Status.PENDING,
            "claimed_at": None,
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error": error[:2000],
            "updated_at": now,
        }
        if not count_attempt:
            changes["attempts"] = F("attempts") - 1
        done = _claimed(group, claimed_at).update(**changes)
        summary.count(platform, outcome, done)


def _record_upload_result(
    rows: Sequence[Conversion], claimed_at: datetime, result: UploadResult, summary: UploadSummary
) -> None:
    """Each row's outcome by its index in the request. "Already exists" means it is there: uploaded."""
    now = timezone.now()
    platform = rows[0].platform
    # Meta answers with a trace id; Google's upload answer carries a job id.
    request_id = (result.request_id or str((result.raw or {}).get("job_id") or ""))[:128]
    by_index = {outcome.index: outcome for outcome in result.outcomes}
    uploaded: list[Conversion] = []
    already_there: list[Conversion] = []
    refused_innocent: list[Conversion] = []
    missing: list[Conversion] = []
    rejected: dict[tuple[str, str], list[Conversion]] = defaultdict(list)
    for index, row in enumerate(rows):
        outcome: RowOutcome | None = by_index.get(index)
        if outcome is None:
            missing.append(row)
        elif outcome.status == "uploaded":
            uploaded.append(row)
        elif outcome.status == "duplicate":
            already_there.append(row)
        elif outcome.code == "request_refused":
            refused_innocent.append(row)
        else:
            rejected[(outcome.code[:128], outcome.message[:2000])].append(row)
    with transaction.atomic():
        for group, code, label in ((uploaded, "", "uploaded"), (already_there, "already_exists", "duplicate")):
            if not group:
                continue
            done = _claimed(group, claimed_at).update(
                status=Conversion.Status.UPLOADED,
                claimed_at=None,
                uploaded_at=now,
                request_id=request_id,
                last_error="",
                platform_code=code,
                updated_at=now,
            )
            summary.count(platform, label, done)
        for (code, message), group in rejected.items():
            done = _claimed(group, claimed_at).update(
                status=Conversion.Status.REJECTED,
                claimed_at=None,
                platform_code=code,
                platform_message=message,
                request_id=request_id,
                last_error="",
                updated_at=now,
            )
            summary.count(platform, "rejected", done)
    if refused_innocent:
        # Meta refused the request because of another row: these were never looked at.
        _retry_later(
            refused_innocent, claimed_at, "Sent with a refused event; sending again.", summary, count_attempt=False
        )
    if missing:
        _retry_later(missing, claimed_at, "The platform answered without an outcome for this row.", summary)


def _upload_batch(rows: list[Conversion], summary: UploadSummary) -> str:
    """Send one claimed batch; returns "ok", "retry" (the group backs off) or "auth" (stop its connection)."""
    first = rows[0]
    claimed_at = first.claimed_at
    platform = first.platform
    adapter = platform_for_account(first.account)
    if platform == Platform.GOOGLE:
        items: list[Any] = [_click_conversion(r) for r in rows]
        destination = ""
    else:
        items = [_conversion_event(r) for r in rows]
        destination = first.action.external_id
    summary.requests += 1
    try:
        result = adapter.upload_conversions(first.account, items, destination_id=destination)
    except RateLimitedError as exc:
        _retry_later(rows, claimed_at, str(exc), summary, retry_after=exc.retry_after_seconds)
        return "retry"
    except TransientError as exc:
        _retry_later(rows, claimed_at, str(exc), summary)
        return "retry"
    except AuthError as exc:
        # Credentials are an operator's problem: keep the rows, do not spend their attempts.
        logger.error("conversion upload refused credentials", extra={"platform": platform, "error": str(exc)})
        _retry_later(
            rows,
            claimed_at,
            f"Credentials refused: {exc}",
            summary,
            retry_after=settings.TASK_MAX_RETRY_DELAY_SECONDS,
            count_attempt=False,
            outcome="auth_error",
        )
        return "auth"
    except PermanentError as exc:
        outcomes = (exc.details or {}).get("outcomes") if isinstance(exc.details, dict) else None
        if outcomes and any(o.code != "request_refused" for o in outcomes if o.status == "rejected"):
            _record_upload_result(rows, claimed_at, UploadResult(outcomes=outcomes, request_id=exc.request_id), summary)
        elif outcomes:
            _retry_later(rows, claimed_at, str(exc), summary)
        else:
            failed = UploadResult(
                outcomes=[
                    RowOutcome(i, "rejected", code=exc.code or "request_refused", message=exc.message)
                    for i in range(len(rows))
                ],
                request_id=exc.request_id,
            )
            _record_upload_result(rows, claimed_at, failed, summary)
        return "ok"
    except PlatformError as exc:  # an error class added later: treat as "try later"
        _retry_later(rows, claimed_at, str(exc), summary)
        return "retry"
    _record_upload_result(rows, claimed_at, result, summary)
    return "ok"


def conversions_upload_pending(*, now: datetime | None = None, max_requests: int | None = None) -> UploadSummary:
    """Expire, reclaim, then claim and upload every due conversion, batch by batch.

    Each batch is one account and action, at most 2,000 (Google) or 1,000 (Meta) rows, claimed
    just before it is sent. Safe to run concurrently and to run again after a crash.
    """
    summary = UploadSummary()
    start = now or timezone.now()
    conversions_expire_stale(now=start, summary=summary)
    conversions_reclaim_stale_claims(now=start, summary=summary)
    # Refused credentials stop only the connection they belong to: accounts reached through
    # another login (or the other platform) keep uploading.
    stopped_connections: set[tuple[str, int | None]] = set()
    for platform, account_id, action_id, connection_id in selectors.due_upload_groups(now=start):
        while (platform, connection_id) not in stopped_connections:
            if max_requests is not None and summary.requests >= max_requests:
                return summary
            limit = MAX_BATCH[platform]
            claim_time = now or timezone.now()
            rows = _claim(platform=platform, account_id=account_id, action_id=action_id, limit=limit, now=claim_time)
            if not rows:
                break
            verdict = _upload_batch(rows, summary)
            if verdict == "auth":
                stopped_connections.add((platform, connection_id))
            if verdict != "ok" or len(rows) < limit:
                break
            if now is not None:
                # A fixed clock would hand the next claim the same claimed_at; keep claims distinct.
                now = now + timedelta(microseconds=1)
    if summary.requests:
        logger.info("conversion upload run", extra={f"upload_{k}": v for k, v in summary.as_dict().items()})
    return summary


def conversions_retry(*, conversion_ids: Iterable[int]) -> int:
    """Operator action: give failed conversions a fresh set of attempts."""
    now = timezone.now()
    return Conversion.objects.filter(pk__in=list(conversion_ids), status=Conversion.Status.FAILED).update(
        status=Conversion.Status.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        updated_at=now,
    )


# --- Service API keys -------------------------------------------------------------------------------


def service_api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _key_prefix(raw_key: str) -> str:
    """Enough to recognise a key, never enough to matter: a quarter of a short key at most."""
    if raw_key.startswith(SERVICE_KEY_PREFIX):
        return raw_key[: len(SERVICE_KEY_PREFIX) + 4]
    return raw_key[: min(6, len(raw_key) // 4)]


def service_api_key_create(
    *, name: str, raw_key: str = "", scopes: list[str] | None = None
) -> tuple[ServiceApiKey, str]:
    """A new key (by default: post conversions and read the actions); the raw key is returned once
    and never stored."""
    raw_key = raw_key or SERVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ServiceApiKey.objects.create(
        name=name,
        prefix=_key_prefix(raw_key),
        key_hash=service_api_key_hash(raw_key),
        scopes=list(scopes) if scopes is not None else default_service_scopes(),
    )
    return key, raw_key


def service_api_key_ensure(*, name: str, raw_key: str) -> tuple[ServiceApiKey, bool]:
    """The key with this value, created under ``name`` if missing (start-up seeding; idempotent)."""
    existing = ServiceApiKey.objects.filter(key_hash=service_api_key_hash(raw_key)).first()
    if existing is not None:
        return existing, False
    if ServiceApiKey.objects.filter(name=name).exists():
        # The configured key changed: the old one under this name stops working.
        ServiceApiKey.objects.filter(name=name).update(
            name=f"{name} (replaced {timezone.now():%Y-%m-%d %H:%M})", is_active=False
        )
    key, _ = service_api_key_create(name=name, raw_key=raw_key)
    return key, True


def service_api_key_authenticate(*, raw_key: str) -> ServiceApiKey | None:
    if not raw_key:
        return None
    key = ServiceApiKey.objects.filter(key_hash=service_api_key_hash(raw_key), is_active=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > SERVICE_KEY_TOUCH_INTERVAL:
        ServiceApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


# --- Conversion actions ------------------------------------------------------------------------------


def conversion_action_ensure(*, account: Any, external_id: str, name: str) -> tuple[ConversionAction, bool]:
    return ConversionAction.objects.get_or_create(account=account, external_id=external_id, defaults={"name": name})
