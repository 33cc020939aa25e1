"""JWT authentication that reads the user and their account roles in one query.

Every API request is scoped by the caller's roles (``campaigns.access``), so every request needs
both the user and their grants: simplejwt's JWTAuthentication reads the user, then access_scope
reads the grants, two round trips to the database. This class reads them together; everything
else (token validation, the active check, the password-change revocation) is simplejwt's own.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication

from campaigns import access


class _UsersWithGrants:
    """What simplejwt asks of its user model (``objects.get`` and ``DoesNotExist``), with the
    grants annotated onto the user it gets."""

    def __init__(self, user_model: Any) -> None:
        self._user_model = user_model
        self.DoesNotExist = user_model.DoesNotExist

    @property
    def objects(self) -> Any:
        return access.users_with_grants(self._user_model.objects.all())


class JWTWithRolesAuthentication(JWTAuthentication):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # simplejwt only calls .objects.get and catches .DoesNotExist on it.
        self.user_model = _UsersWithGrants(self.user_model)  # type: ignore[assignment]


class JWTWithRolesScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class (its extension matches that class only)."""

    target_class = "campaigns.authentication.JWTWithRolesAuthentication"
