"""Connections' reads."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from campaigns import access
from campaigns.models import AdAccount
from connections.models import Connection


def connection_list(*, user: Any) -> list[tuple[Connection, list[int]]]:
    """Connections with the ids of their accounts the user is admin of.

    An admin of every account sees every connection; an admin of some accounts sees the
    connections those accounts belong to, with those accounts only (another tenant's accounts are
    not revealed). One query for the connections, one for their accounts.
    """
    every = access.access_scope(user).covers_every_account(access.ADMIN)
    admin_of = access.visible_account_ids(user, role=access.ADMIN)
    accounts = AdAccount.objects.order_by("platform", "name").only("pk", "connection_id")
    if admin_of is not None:
        accounts = accounts.filter(pk__in=admin_of)
    connections: QuerySet[Connection] = Connection.objects.prefetch_related(
        Prefetch("accounts", queryset=accounts, to_attr="visible_accounts")
    ).order_by("platform", "label", "pk")
    if not every:
        connections = connections.filter(accounts__pk__in=admin_of or []).distinct()
    # visible_accounts is the Prefetch's to_attr list, set on each row at run time.
    return [(connection, [a.pk for a in connection.visible_accounts]) for connection in connections]  # type: ignore[attr-defined]


def may_manage_connections(user: Any) -> bool:
    """Connecting, reconnecting and disconnecting add or stop accounts for everyone: an admin of
    every account (superusers included)."""
    return access.access_scope(user).covers_every_account(access.ADMIN)
