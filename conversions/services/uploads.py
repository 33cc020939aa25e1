"""Upload: due rows are claimed and the claim committed before the network call, so a worker that
dies mid-call leaves rows "uploading" with a lease; the next run resends them with the same
order_id / event_id and the platform dedupes, so nothing is lost and nothing is counted twice."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from adsplatform.resilience import backoff_delay
from campaigns.models import Platform
from conversions import selectors
from conversions.metrics import CONVERSION_UPLOADS
from conversions.models import Conversion
from conversions.services.common import (
    MAX_BATCH,
    META_EXPIRY_MARGIN,
    META_MAX_EVENT_AGE,
    retry_base_seconds,
    upload_lease_seconds,
    upload_max_attempts,
)
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
)
from platforms.registry import platform_for_account

logger = logging.getLogger(__name__)


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
    # Jitter down to half the step keeps many rows that failed together from coming back together.
    return backoff_delay(
        attempts,
        base=retry_base_seconds(),
        jitter=(0.5, 1.0),
        not_before=retry_after,
        cap=settings.TASK_MAX_RETRY_DELAY_SECONDS,
    )


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
    claimed_at = cast(datetime, first.claimed_at)  # the rows come claimed: every one has claimed_at set
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
        # Held back by the adapter (nothing sent): the rows wait without spending an attempt.
        _retry_later(rows, claimed_at, str(exc), summary, retry_after=exc.retry_after_seconds, count_attempt=exc.sent)
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
