"""Deliveries: each lead to each destination once (CRM, email, Slack), and the low-priority digest."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from adsplatform.resilience import backoff_delay
from webhooks.models import (
    Destination,
    Lead,
    LeadDelivery,
    Priority,
)
from webhooks.services.common import DeliveryPermanentError, DeliveryTemporaryError, delivery_timeout, setting
from webhooks.services.receiving import enqueue_delivery
from webhooks.services.sources import standard_webhook_signature

logger = logging.getLogger(__name__)


# --- Deliveries --------------------------------------------------------------------------------

MAX_DELIVERY_ATTEMPTS = 8
_BASE_RETRY_SECONDS = 10.0


def retry_delay_seconds(*, attempt: int, cap_seconds: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter (10 s, 20 s, 40 s …), never beyond ``cap_seconds``; a
    receiver's Retry-After (at least a second) instead, when it sent one."""
    return backoff_delay(
        attempt,
        base=_BASE_RETRY_SECONDS,
        jitter=(0.8, 1.2),
        cap=cap_seconds,
        retry_after=None if retry_after is None else max(1.0, retry_after),
    )


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
        "campaign_name": lead.campaign.name if lead.campaign is not None else None,
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
            timeout=delivery_timeout(),
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
        raise DeliveryPermanentError(f"HTTP {code}", response_code=code)
    return code


def _send_to_crm(delivery: LeadDelivery, *, cap_seconds: float) -> int:
    destination, lead = delivery.destination, delivery.lead
    body = json.dumps(lead_to_payload(lead), separators=(",", ":")).encode()
    # The lead id as webhook-id lets the CRM drop a repeat after a lost acknowledgement.
    msg_id = str(lead.pk)
    timestamp = int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    # During a rotation both secrets sign; Standard Webhooks lets the header carry several.
    signatures = [
        standard_webhook_signature(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
        for secret in destination.signing_secrets(timezone.now())
    ]
    if signatures:
        headers["webhook-signature"] = " ".join(signatures)
    return _post_json(destination.url, body, headers, attempt=delivery.attempts, cap_seconds=cap_seconds)


def _lead_summary(lead: Lead) -> str:
    lines = [
        f"Priority: {lead.get_priority_display()}",
        f"Name: {lead.full_name or '-'}",
        f"Phone: {lead.phone or lead.phone_raw or '-'}",
        f"Email: {lead.email or '-'}",
        f"Campaign: {lead.campaign.name if lead.campaign is not None else lead.campaign_external_id or '-'}",
    ]
    lines += [f"{key}: {value}" for key, value in (lead.custom_answers or {}).items()]
    return "\n".join(lines)


def _send_email_message(destination: Destination, subject: str, body: str, *, attempt: int, cap_seconds: float) -> int:
    """One email to the destination's recipients (a single lead or a digest)."""
    recipients = [r.strip() for r in re.split(r"[,\n;]", destination.recipients) if r.strip()]
    if not recipients:
        raise DeliveryPermanentError("No recipients configured.")
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


_SENDERS: dict[str, Callable[..., int]] = {
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
    lease = timedelta(seconds=sum(delivery_timeout()) + 30)
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
            raise DeliveryPermanentError("Destination is inactive.")
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
    except DeliveryPermanentError as exc:
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
    failed: list[Any] = list(
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
_DIGEST_TEXT_LIMITS: dict[str, int] = {Destination.Kind.SLACK: 38_000}
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
    cap_seconds = float(setting("LEAD_DIGEST_INTERVAL_SECONDS", 900))
    attempt = max(row.attempts for row in rows) + 1
    try:
        if destination.kind == Destination.Kind.EMAIL:
            code = _send_email_message(destination, subject, text, attempt=attempt, cap_seconds=cap_seconds)
        else:
            code = _send_slack_text(destination, text, attempt=attempt, cap_seconds=cap_seconds)
    except (DeliveryTemporaryError, DeliveryPermanentError) as exc:
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
