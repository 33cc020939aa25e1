"""Who may do what, on which ad account: the one place every read is scoped and every write is asked.

Roles are granted per account (or for every account) to users and groups, with the three levels
the platforms use themselves: ``viewer`` reads; ``advertiser`` also changes budgets and status,
approves proposals, moves leads, starts syncs and posts conversions; ``admin`` also edits
guardrails, routing rules, destinations, service keys and who has access. Superusers are admin
everywhere. ``is_staff`` only opens the admin's door: what a staff member sees and changes there
is decided here, like for an API client.

Reads go through :func:`scope_queryset` (an object of an account the caller cannot see is a 404,
its existence not revealed); writes through :func:`require_role` (visible but a role too low is
a 403). Records tied to no account (a lead from a form of no known campaign, a platform-wide
alert) are visible to grants on every account only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from django.db.models import Q, QuerySet

from campaigns.models import AccountAccess, AccountRole, AdAccount

VIEWER, ADVERTISER, ADMIN = AccountRole.VIEWER, AccountRole.ADVERTISER, AccountRole.ADMIN
ROLE_RANK: dict[str, int] = {VIEWER: 1, ADVERTISER: 2, ADMIN: 3}  # by role value: callers pass plain strings


class AccessDenied(Exception):
    """A role too low on an object the caller can see (a 403)."""

    def __init__(self, message: str, *, role_needed: str) -> None:
        super().__init__(message)
        self.role_needed = role_needed


class NotVisible(Exception):
    """An object of an account the caller cannot see (a 404: its existence is not revealed)."""


@dataclass(frozen=True)
class AccessScope:
    """A user's roles, read once: per account, and the role on every account (if any)."""

    is_superuser: bool = False
    every_account_role: str | None = None
    account_roles: dict[int, str] = field(default_factory=dict)

    def role_on(self, account_id: int | None) -> str | None:
        """The best role on one account (None: not visible). No account: the every-account role."""
        if self.is_superuser:
            return ADMIN
        if account_id is None:
            return self.every_account_role
        return _best(self.account_roles.get(account_id), self.every_account_role)

    def has(self, role: str, account_id: int | None) -> bool:
        granted = self.role_on(account_id)
        return granted is not None and ROLE_RANK[granted] >= ROLE_RANK[role]

    def covers_every_account(self, role: str = VIEWER) -> bool:
        return self.is_superuser or (
            self.every_account_role is not None and ROLE_RANK[self.every_account_role] >= ROLE_RANK[role]
        )

    def account_ids(self, role: str = VIEWER) -> set[int]:
        """Accounts granted one by one with at least ``role`` (on top of any every-account role)."""
        return {pk for pk, granted in self.account_roles.items() if ROLE_RANK[granted] >= ROLE_RANK[role]}


def _best(*roles: str | None) -> str | None:
    given = [r for r in roles if r]
    return max(given, key=ROLE_RANK.__getitem__) if given else None


_NOBODY = AccessScope()


def access_scope(user: Any) -> AccessScope:
    """The user's roles (their own grants and their groups'), cached on the user object: one
    query per request however many checks the request makes."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return _NOBODY
    cached = getattr(user, "_account_access_scope", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        scope = AccessScope(is_superuser=True)
    else:
        every: str | None = None
        per_account: dict[int, str] = {}
        # Read with the user by JWTWithRolesAuthentication (one query for both), or read now.
        loaded = getattr(user, LOADED_GRANTS_ATTRIBUTE, None)
        grants = loaded if loaded is not None else _grants_of(user).values_list("account_id", "role")
        for account_id, role in grants:
            if account_id is None:
                every = _best(every, role)
            else:
                # A grant always names a role, so the best of it and any earlier one is a role.
                per_account[account_id] = cast(str, _best(per_account.get(account_id), role))
        scope = AccessScope(every_account_role=every, account_roles=per_account)
    user._account_access_scope = scope
    return scope


def access_scope_forget(user: Any) -> None:
    """Drop the cached roles (after granting or revoking within the same request)."""
    for attribute in ("_account_access_scope", LOADED_GRANTS_ATTRIBUTE):
        if hasattr(user, attribute):
            delattr(user, attribute)


# Where a user loaded with their grants keeps them (campaigns.authentication): [(account_id, role), ...].
LOADED_GRANTS_ATTRIBUTE = "_loaded_account_grants"


def _grants_of(user: Any) -> QuerySet[AccountAccess]:
    """The user's own grants and their groups'."""
    return AccountAccess.objects.filter(Q(user=user) | Q(group__user=user))


def scope_queryset(queryset: QuerySet, user: Any, *, account_field: str = "account", role: str = VIEWER) -> QuerySet:
    """Only the rows of accounts the user holds ``role`` on. ``account_field`` is the lookup path
    from the rows to their AdAccount ("pk" for accounts themselves). Rows whose account is empty
    are kept only for a role on every account."""
    scope = access_scope(user)
    if scope.covers_every_account(role):
        return queryset
    ids = scope.account_ids(role)
    if not ids:
        return queryset.none()
    lookup = "pk__in" if account_field == "pk" else f"{account_field}__in"
    return queryset.filter(**{lookup: ids})


def visible_accounts(user: Any, *, role: str = VIEWER) -> QuerySet[AdAccount]:
    return scope_queryset(AdAccount.objects.all(), user, account_field="pk", role=role)


def visible_account_ids(user: Any, *, role: str = VIEWER) -> set[int] | None:
    """The ids a read may cover, or None for every account (no filter needed)."""
    scope = access_scope(user)
    return None if scope.covers_every_account(role) else scope.account_ids(role)


ROLE_NEEDED: dict[str, str] = {
    VIEWER: "This needs at least the viewer role on the account.",
    ADVERTISER: "This needs the advertiser role on the account (budgets, status, leads, syncs, conversions).",
    ADMIN: "This needs the admin role on the account (guardrails, routing, destinations, keys, access).",
}


def require_role(user: Any, account_id: int | None, role: str) -> None:
    """Raise unless the user holds ``role`` on the account: NotVisible when they cannot even see
    it, AccessDenied when they can but their role is too low. The one question every write asks."""
    scope = access_scope(user)
    if scope.has(role, account_id):
        return
    if scope.role_on(account_id) is None:
        raise NotVisible("Not found.")
    raise AccessDenied(ROLE_NEEDED[role], role_needed=role)


def has_role(user: Any, account_id: int | None, role: str) -> bool:
    return access_scope(user).has(role, account_id)


def has_role_anywhere(user: Any, role: str) -> bool:
    """Whether the user holds ``role`` on at least one account (what the admin shows them)."""
    scope = access_scope(user)
    return scope.covers_every_account(role) or bool(scope.account_ids(role))


def account_access_grant(
    *, account: AdAccount | None, role: str, user: Any = None, group: Any = None, granted_by: Any = None
) -> AccountAccess:
    """Grant (or change) a role; one row per grantee and account."""
    if role not in ROLE_RANK:
        raise ValueError(f"Unknown role {role!r}: use one of {', '.join(ROLE_RANK)}.")
    if (user is None) == (group is None):
        raise ValueError("Grant to a user or to a group.")
    grant, _ = AccountAccess.objects.update_or_create(
        user=user,
        group=group,
        account=account,
        defaults={"role": role, "granted_by": granted_by.get_username() if granted_by is not None else ""},
    )
    if user is not None:
        access_scope_forget(user)
    return grant


def account_access_revoke(*, account: AdAccount | None, user: Any = None, group: Any = None) -> int:
    deleted, _ = AccountAccess.objects.filter(user=user, group=group, account=account).delete()
    if user is not None:
        access_scope_forget(user)
    return deleted


def accounts_with_roles(user: Any) -> list[tuple[AdAccount, str]]:
    """Every account the user can see, with their role on it (GET /api/v1/me/)."""
    scope = access_scope(user)
    # Visible means the scope gives a role on it: role_on is never None here.
    return [
        (account, cast(str, scope.role_on(account.pk)))
        for account in visible_accounts(user).order_by("platform", "name")
    ]
