"""Conversion actions: what conversions are posted to, per account."""

from __future__ import annotations

from typing import Any

from campaigns.models import AdAccount
from conversions.models import ConversionAction
from platforms.registry import platform_for_account


def conversion_action_ensure(*, account: Any, external_id: str, name: str) -> tuple[ConversionAction, bool]:
    return ConversionAction.objects.get_or_create(account=account, external_id=external_id, defaults={"name": name})


def conversion_action_discover(account: AdAccount) -> list[tuple[ConversionAction, bool]]:
    """The account's conversion actions as the platform lists them (Google conversion actions,
    Meta pixels), stored if new; each with whether it was created. Raises PlatformError."""
    listed = platform_for_account(account).list_conversion_actions(account)
    return [conversion_action_ensure(account=account, external_id=info.external_id, name=info.name) for info in listed]
