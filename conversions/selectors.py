"""Reads of the conversions app: the ledger, configured actions, and upload health."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from conversions.models import Conversion, ConversionAction

# Outcomes that end a conversion's life; the success rate is uploaded / all of them.
FINAL_STATUSES = (
    Conversion.Status.UPLOADED,
    Conversion.Status.REJECTED,
    Conversion.Status.FAILED,
    Conversion.Status.EXPIRED,
)


def conversion_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Conversion]:
    """The ledger, newest first; ``filters`` are already-validated field lookups."""
    queryset = Conversion.objects.select_related("account", "action")
    return queryset.filter(**(filters or {})).order_by("-created_at", "-id")


def conversion_action_list(*, filters: dict[str, Any] | None = None) -> QuerySet[ConversionAction]:
    return ConversionAction.objects.select_related("account").filter(**(filters or {})).order_by("account", "name")


def conversion_action_find(*, platform: str, reference: str) -> ConversionAction | None:
    """An action by Google's id / Meta's pixel id, Google resource name, or our own id.

    Platform ids come first: they are what a sender knows and they are unique per platform.
    """
    reference = str(reference).strip()
    if not reference:
        return None
    actions = ConversionAction.objects.select_related("account").filter(account__platform=platform)
    if reference.startswith("customers/"):
        parts = reference.split("/")
        if len(parts) != 4 or parts[2] != "conversionActions":
            return None
        return actions.filter(account__external_id=parts[1], external_id=parts[3]).first()
    found = actions.filter(external_id=reference).first()
    if found is None and reference.isdigit():
        found = actions.filter(pk=int(reference)).first()
    return found


def meta_default_action() -> ConversionAction | None:
    """The one active Meta pixel, when there is exactly one (events then need not name it)."""
    actions = list(
        ConversionAction.objects.select_related("account").filter(account__platform="meta", is_active=True)[:2]
    )
    return actions[0] if len(actions) == 1 else None


def conversions_by_dedupe_keys(*, keys: list[str]) -> dict[str, Conversion]:
    found: dict[str, Conversion] = {}
    for chunk_start in range(0, len(keys), 1000):
        chunk = keys[chunk_start : chunk_start + 1000]
        for conversion in Conversion.objects.select_related("account", "action").filter(dedupe_key__in=chunk):
            found[conversion.dedupe_key] = conversion
    return found


def conversions_by_ids(*, ids: list[int]) -> list[Conversion]:
    by_id = {c.pk: c for c in Conversion.objects.select_related("account", "action").filter(pk__in=ids)}
    return [by_id[i] for i in ids if i in by_id]


def due_upload_groups(*, now: datetime) -> list[tuple[str, int, int, int | None]]:
    """(platform, account id, action id, the account's connection id) of every group with a
    conversion due for upload."""
    rows = (
        Conversion.objects.filter(status=Conversion.Status.PENDING, next_attempt_at__lte=now)
        .values_list("platform", "account_id", "action_id", "account__connection_id")
        .distinct()
        .order_by("platform", "account_id", "action_id")
    )
    return list(rows)


def oldest_pending_age_seconds(*, now: datetime | None = None) -> dict[str, float]:
    """Per platform: seconds since the oldest conversion still waiting (pending or uploading) arrived."""
    now = now or timezone.now()
    rows = (
        Conversion.objects.filter(status__in=(Conversion.Status.PENDING, Conversion.Status.UPLOADING))
        .values("platform")
        .annotate(oldest=Min("created_at"))
    )
    return {row["platform"]: max((now - row["oldest"]).total_seconds(), 0.0) for row in rows}


def upload_success_rate(*, window: timedelta = timedelta(hours=24), now: datetime | None = None) -> dict[str, float]:
    """Per platform: uploaded / finished, over conversions that finished within ``window``.

    A platform with nothing finished has no rate (absent), not 0 or 1.
    """
    now = now or timezone.now()
    rows = (
        Conversion.objects.filter(status__in=FINAL_STATUSES, updated_at__gte=now - window)
        .values("platform")
        .annotate(total=Count("id"), uploaded=Count("id", filter=Q(status=Conversion.Status.UPLOADED)))
    )
    return {row["platform"]: row["uploaded"] / row["total"] for row in rows if row["total"]}


CSV_COLUMNS = (
    "id",
    "platform",
    "account",
    "conversion_action",
    "status",
    "order_id",
    "event_name",
    "event_id",
    "value",
    "currency_code",
    "occurred_at",
    "attempts",
    "platform_code",
    "platform_message",
    "last_error",
    "uploaded_at",
    "request_id",
    "created_at",
)


def conversion_csv_rows(*, queryset: QuerySet[Conversion]) -> Iterator[list[str]]:
    """Rows for an export, streamed; hashed identifiers and payloads stay out of spreadsheets."""
    rows = queryset.select_related("account", "action").order_by("id")
    for c in rows.iterator(chunk_size=2000):
        yield [
            str(c.pk),
            c.platform,
            c.account.external_id,
            c.action.external_id,
            c.status,
            c.order_id,
            c.event_name,
            c.event_id,
            "" if c.value_micros is None else str(Decimal(c.value_micros) / 1_000_000),
            c.currency_code,
            c.occurred_at.isoformat(),
            str(c.attempts),
            c.platform_code,
            c.platform_message,
            c.last_error,
            c.uploaded_at.isoformat() if c.uploaded_at else "",
            c.request_id,
            c.created_at.isoformat(),
        ]


def conversion_action_account_ids(*, platform: str, references: Iterable[str]) -> set[int]:
    """The accounts of the actions a batch names (a Meta event naming none: the default pixel's).
    Unknown references are left out: ingestion refuses them with its own message."""
    found: set[int] = set()
    for reference in set(references):
        action = conversion_action_find(platform=platform, reference=reference) if reference else None
        if action is None and not reference and platform == "meta":
            action = meta_default_action()
        if action is not None:
            found.add(action.account_id)
    return found
