"""Start-up data of the conversions app: the configured service key, and the sandbox's actions."""

from __future__ import annotations

from typing import TextIO

from django.conf import settings

from campaigns.models import AdAccount, Platform
from conversions import services

SEEDED_KEY_NAME = "SERVICE_API_KEY"

# What the local emulators serve (platforms/sandbox): Google conversion actions per customer and
# the Meta pixel. Written out here because the product never imports the sandbox.
SANDBOX_ACCOUNTS = (
    (Platform.GOOGLE, "1234567890", "IBVI Demo US", "USD", "America/New_York", "1000000001"),
    (Platform.GOOGLE, "2345678901", "IBVI Demo UK", "GBP", "Europe/London", "1000000001"),
    (Platform.META, "300000000000001", "IBVI Sandbox - EUR", "EUR", "Europe/Berlin", ""),
)
SANDBOX_ACTIONS = (
    (Platform.GOOGLE, "1234567890", "880000001", "Purchase"),
    (Platform.GOOGLE, "1234567890", "880000002", "Lead form"),
    (Platform.GOOGLE, "2345678901", "880000011", "Purchase"),
    (Platform.GOOGLE, "2345678901", "880000012", "Lead form"),
    (Platform.META, "300000000000001", "400000000000001", "Sandbox pixel"),
)


def seed_sandbox_actions() -> int:
    """The sandbox accounts' conversion actions (and the accounts, if campaigns has not made them)."""
    created = 0
    accounts = {}
    for platform, external_id, name, currency, time_zone, manager in SANDBOX_ACCOUNTS:
        accounts[(platform, external_id)], _ = AdAccount.objects.get_or_create(
            platform=platform,
            external_id=external_id,
            defaults={"name": name, "currency_code": currency, "time_zone": time_zone, "manager_customer_id": manager},
        )
    for platform, account_id, action_id, name in SANDBOX_ACTIONS:
        _, was_created = services.conversion_action_ensure(
            account=accounts[(platform, account_id)], external_id=action_id, name=name
        )
        created += was_created
    return created


def run(*, stdout: TextIO) -> None:
    raw_key = settings.SERVICE_API_KEY
    if raw_key:
        key, created = services.service_api_key_ensure(name=SEEDED_KEY_NAME, raw_key=raw_key)
        # The key itself is never printed: it is in the environment already.
        stdout.write(f"Service API key {key.prefix}… {'created' if created else 'present'} (from SERVICE_API_KEY).\n")
    if settings.ADS_SANDBOX:
        seeded = seed_sandbox_actions()
        stdout.write(f"Sandbox conversion actions: {seeded} created, {len(SANDBOX_ACTIONS) - seeded} present.\n")
