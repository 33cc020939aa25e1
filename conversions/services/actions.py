"""Conversion actions: what conversions are posted to, per account."""

from __future__ import annotations

from typing import Any

from conversions.models import ConversionAction


def conversion_action_ensure(*, account: Any, external_id: str, name: str) -> tuple[ConversionAction, bool]:
    return ConversionAction.objects.get_or_create(account=account, external_id=external_id, defaults={"name": name})
