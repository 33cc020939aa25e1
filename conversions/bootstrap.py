"""Start-up data of the conversions app: the configured service key, and the sandbox's actions."""

from __future__ import annotations

import logging
from typing import TextIO

from django.conf import settings

from campaigns.bootstrap import discover_missing_sandbox_accounts
from campaigns.models import AdAccount
from conversions import services
from platforms.base import PlatformError

logger = logging.getLogger(__name__)

SEEDED_KEY_NAME = "SERVICE_API_KEY"


def seed_sandbox_actions() -> tuple[int, int]:
    """Each active account's conversion actions (Meta: pixels), as the platform lists them:
    (created, already present). The sandbox's accounts are discovered first if campaigns has not
    made them yet. An account whose platform cannot be reached is skipped (logged); the next
    start-up tries again."""
    discover_missing_sandbox_accounts()
    created = present = 0
    for account in AdAccount.objects.filter(is_active=True).order_by("pk"):
        try:
            outcomes = services.conversion_action_discover(account)
        except PlatformError as exc:
            logger.info("conversion actions not discovered", extra={"account": account.external_id, "error": str(exc)})
            continue
        for _, was_created in outcomes:
            created += was_created
            present += not was_created
    return created, present


def run(*, stdout: TextIO) -> None:
    raw_key = settings.SERVICE_API_KEY
    if raw_key:
        key, created = services.service_api_key_ensure(name=SEEDED_KEY_NAME, raw_key=raw_key)
        # The key itself is never printed: it is in the environment already.
        stdout.write(f"Service API key {key.prefix}… {'created' if created else 'present'} (from SERVICE_API_KEY).\n")
    if settings.ADS_SANDBOX:
        # Real accounts' actions are an operator's choice; the sandbox's are all seeded.
        actions_created, actions_present = seed_sandbox_actions()
        stdout.write(f"Sandbox conversion actions: {actions_created} created, {actions_present} present.\n")
