"""A lead's stage, and the Google conversion a qualified lead with a gclid becomes."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webhooks.models import (
    Lead,
    LeadStage,
)
from webhooks.services.common import setting

logger = logging.getLogger(__name__)


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

    reference = setting("LEAD_CONVERSION_ACTION", "")
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
    conversion_stage = setting("LEAD_CONVERSION_STAGE", LeadStage.QUALIFIED)
    if stage == conversion_stage and lead.gclid and lead.conversion_created_at is None:
        lead_id = lead.pk

        def close_loop() -> None:
            fresh = Lead.objects.get(pk=lead_id)
            if lead_conversion_hook(lead=fresh):
                Lead.objects.filter(pk=lead_id).update(conversion_created_at=timezone.now())

        transaction.on_commit(close_loop)
    return lead
