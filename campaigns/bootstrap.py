"""Start-up seeding for `make run`: with the sandbox on, discover its accounts."""

from __future__ import annotations

import logging

from django.conf import settings

from campaigns import services
from platforms.base import PlatformError

logger = logging.getLogger(__name__)


def run(*, stdout) -> None:
    if not settings.ADS_SANDBOX:
        return  # real accounts are discovered by an operator (admin action or command)
    try:
        accounts = services.account_discover()
    except PlatformError as exc:
        stdout.write(f"Sandbox accounts not discovered ({exc}); run `manage.py discover_accounts` later.")
        return
    stdout.write(f"Sandbox ad accounts ready: {len(accounts)}.")
