"""A lead's stage, and the Google conversion a lead at or past the conversion stage becomes."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webhooks.models import (
    Lead,
    LeadStage,
    lead_stage_reaches,
)
from webhooks.services.common import setting

logger = logging.getLogger(__name__)


# --- Stage and closing the loop ----------------------------------------------------------------


def _click_id(lead: Lead) -> tuple[str, str]:
    """The lead's click id as (field, value); Google takes at most one, gclid first."""
    for name in ("gclid", "gbraid", "wbraid"):
        value = getattr(lead, name)
        if value:
            return name, value
    return "", ""


def lead_can_convert(lead: Lead) -> bool:
    """A click id, or an email or phone Google can match an enhanced conversion for leads on."""
    return bool(_click_id(lead)[0] or lead.email or lead.phone)


def lead_conversion_hook(*, lead: Lead) -> bool:
    """Hand a lead that reached the conversion stage to the conversions ledger as a Google
    conversion: order id = the lead's id (so a repeat is a duplicate, never a second
    conversion), the moment of the stage change, and the lead's hashed contact data. With a
    click id (gclid, gbraid or wbraid) it is a click conversion; without one it is an enhanced
    conversion for leads, which Google matches on the hashed email and phone alone.

    The action is LEAD_CONVERSION_ACTION (a Google action id or resource name) or, when
    unset, the active Google action of the lead's campaign's account. Returns True once the
    ledger holds the conversion; False (logged) when no action can be chosen or the lead's
    data is refused, so the lead can be replayed after the configuration is fixed.
    """
    from conversions import selectors as conversion_selectors
    from conversions import services as conversion_services

    reference = setting("LEAD_CONVERSION_ACTION", "")
    if not reference and lead.campaign is not None:
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
        "conversion_action": reference,
        "conversion_date_time": lead.stage_changed_at or timezone.now(),
        "order_id": f"lead-{lead.pk}",
    }
    click_field, click_id = _click_id(lead)
    if click_field:
        item[click_field] = click_id
    user = {key: value for key, value in (("email", lead.email), ("phone", lead.phone)) if value}
    if user:
        item["user"] = user
    try:
        conversion_services.conversions_ingest_google(items=[item], source="lead-stage")
    except conversion_services.IngestValidationError as exc:
        # The item errors can quote what was sent; only their count and fields are logged.
        logger.warning(
            "lead conversion refused",
            extra={"lead_id": lead.pk, "errors": len(exc.errors), "fields": sorted({e.field for e in exc.errors})},
        )
        return False
    return True


def lead_stage_set(*, lead: Lead, stage: str, actor: Any = None) -> Lead:
    """Move a lead to a stage; reaching LEAD_CONVERSION_STAGE or any stage past it (``won`` when
    the setting is ``qualified``, even straight from ``new``) closes the loop, once per lead."""
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
    conversion_stage = setting("LEAD_CONVERSION_STAGE", LeadStage.QUALIFIED)
    if lead_stage_reaches(stage, conversion_stage) and lead.conversion_created_at is None and lead_can_convert(lead):
        lead_id = lead.pk

        def close_loop() -> None:
            fresh = Lead.objects.get(pk=lead_id)
            # Two moves committed close together both get here; the ledger's order-id dedupe makes
            # the second a duplicate, and only the first sets the mark.
            if fresh.conversion_created_at is None and lead_conversion_hook(lead=fresh):
                Lead.objects.filter(pk=lead_id, conversion_created_at__isnull=True).update(
                    conversion_created_at=timezone.now()
                )

        transaction.on_commit(close_loop)
    return lead
