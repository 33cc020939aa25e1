"""JWT authentication that reads the user and their account roles in one query.

Every API request is scoped by the caller's roles (``campaigns.access``), so every request needs
both the user and their grants: simplejwt's JWTAuthentication reads the user, then access_scope
reads the grants, two round trips to the database. This class reads them together, with one
statement written once: building the same query with the ORM on every request cost more CPU
than the query itself (``make bench``, the campaign list: 40% of an uncached request). Everything
else (token validation, the active check, the password-change revocation) is simplejwt's own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connections
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication

from adsplatform.db import prepared_cursor
from campaigns import access
from campaigns.models import AccountAccess


@cache
def _user_with_grants_sql(user_model: Any, column: str) -> str:
    """The user's row (its fields in the model's order) and an array of their grants
    ("account_id:role"; no account id for a grant on every account), their own and their groups'."""
    users = user_model._meta.db_table
    memberships = user_model.groups.through._meta.db_table
    grants = AccountAccess._meta.db_table
    columns = ", ".join(f"u.{field.column}" for field in user_model._meta.concrete_fields)
    return f"""
        SELECT {columns}, ARRAY(
            SELECT COALESCE(g.account_id::text, '') || ':' || g.role FROM {grants} g
            WHERE g.user_id = u.id OR g.group_id IN (SELECT m.group_id FROM {memberships} m WHERE m.user_id = u.id)
        ) AS grants_with_user
        FROM {users} u WHERE u.{column} = %s
    """  # noqa: S608 - table and column names from the models; the value is a parameter


@cache
def _field_names(user_model: Any) -> list[str]:
    return [field.attname for field in user_model._meta.concrete_fields]


class _UsersWithGrants:
    """What simplejwt asks of its user model (``objects.get`` and ``DoesNotExist``), answered with
    the user's grants attached for access_scope."""

    def __init__(self, user_model: Any) -> None:
        self._user_model = user_model
        self.DoesNotExist = user_model.DoesNotExist
        self.objects = self

    def get(self, **lookup: Any) -> Any:
        ((field, value),) = lookup.items()
        manager = self._user_model._default_manager
        if connections[manager.db].vendor != "postgresql":  # ARRAY(subquery): access_scope reads them later
            return manager.get(**lookup)
        column = self._user_model._meta.get_field(field).column
        with prepared_cursor(manager.db) as cursor:
            cursor.execute(_user_with_grants_sql(self._user_model, column), [value])
            row = cursor.fetchone()
        if row is None:
            raise self.DoesNotExist
        *values, granted = row
        # Every concrete field in order: the model is built as a queryset would build it.
        user = self._user_model.from_db(manager.db, _field_names(self._user_model), values)
        grants = []
        for grant in granted:
            account_id, _, role = grant.partition(":")
            grants.append((int(account_id) if account_id else None, role))
        setattr(user, access.LOADED_GRANTS_ATTRIBUTE, grants)
        return user


class JWTWithRolesAuthentication(JWTAuthentication):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # simplejwt only calls .objects.get and catches .DoesNotExist on it.
        self.user_model = _UsersWithGrants(self.user_model)  # type: ignore[assignment]


class JWTWithRolesScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class (its extension matches that class only)."""

    target_class = "campaigns.authentication.JWTWithRolesAuthentication"
