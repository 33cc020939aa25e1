"""Ingest: every personal identifier is hashed before anything is stored, and a batch is stored
whole or not at all; a repeat (same idempotency key or the same conversions) creates nothing."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import Platform
from conversions import enqueue, hashing, selectors
from conversions.models import Conversion, ConversionAction, IngestRequest
from conversions.services.common import (
    CONSENT_VALUES,
    FUTURE_TOLERANCE,
    GOOGLE_MAX_CONVERSION_AGE,
    META_ACTION_SOURCES,
    META_EXPIRY_MARGIN,
    META_MAX_EVENT_AGE,
    UPLOAD_KICK_CACHE_KEY,
    UPLOAD_KICK_DEBOUNCE_SECONDS,
)
from platforms.base import (
    units_to_micros,
)

logger = logging.getLogger(__name__)


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

    def publish() -> None:
        try:
            enqueue.upload_pending()
        except Exception:
            logger.warning("could not enqueue the conversion upload; beat will run it", exc_info=True)

    transaction.on_commit(publish)
