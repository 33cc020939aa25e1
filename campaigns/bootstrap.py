"""Start-up seeding for `make run`: with the sandbox on, discover its accounts."""

from __future__ import annotations

import logging

from django.conf import settings

from campaigns import services
from campaigns.models import AdAccount
from platforms.base import PlatformError

logger = logging.getLogger(__name__)


def discover_missing_sandbox_accounts() -> int:
    """With the sandbox on, discover the platforms that have no account yet: the start-up
    discovery (``run``) is tried once, and a sandbox that was not up then is found later by beat.
    Real credentials' accounts stay an operator's choice (admin action or command)."""
    if not settings.ADS_SANDBOX:
        return 0
    have = set(AdAccount.objects.values_list("platform", flat=True).distinct())
    missing = [platform for platform in ("google", "meta") if platform not in have]
    if not missing:
        return 0
    found = 0
    for platform in missing:  # one platform's emulator being down must not hold back the other's
        try:
            found += len(services.account_discover(platforms=[platform]))
        except PlatformError as exc:
            logger.info("sandbox accounts still not reachable", extra={"platform": platform, "error": str(exc)})
    if found:
        logger.info("sandbox accounts discovered", extra={"accounts": found})
    return found


def run(*, stdout) -> None:
    if not settings.ADS_SANDBOX:
        return  # real accounts are discovered by an operator (admin action or command)
    try:
        accounts = services.account_discover()
    except PlatformError as exc:
        stdout.write(f"Sandbox accounts not discovered yet ({exc}); beat tries again every 2 minutes.")
        return
    stdout.write(f"Sandbox ad accounts ready: {len(accounts)}.")
