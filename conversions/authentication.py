"""``X-Service-Auth: <key>``: server-to-server authentication with keys created in admin."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from conversions import services
from conversions.models import ServiceApiKey

HEADER = "X-Service-Auth"


@dataclass(frozen=True)
class ServicePrincipal:
    """The caller behind a service key; enough of a user for DRF's permission checks."""

    key: ServiceApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def username(self) -> str:
        return f"service:{self.key.name}"

    @property
    def pk(self) -> None:
        return None

    def __str__(self) -> str:
        return self.username


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    """No header: not this scheme (JWT may follow). A header with an unknown key: 401."""

    def authenticate(self, request):
        raw_key = request.META.get("HTTP_X_SERVICE_AUTH")
        if raw_key is None:
            return None
        key = services.service_api_key_authenticate(raw_key=raw_key.strip())
        if key is None:
            # Never echo the key: it may be a real one with a typo.
            raise exceptions.AuthenticationFailed("Invalid or inactive service key.", code="invalid_service_key")
        return ServicePrincipal(key=key), key

    def authenticate_header(self, request) -> str:
        return HEADER


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "conversions.authentication.ServiceKeyAuthentication"
    name = "ServiceKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": HEADER}


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


def require_service_scope(
    key: ServiceApiKey, scope: str, *, account_ids: set[int] | frozenset[int] = frozenset()
) -> None:
    """What a service key may do, asked like a person's role: the scope, and the accounts it is limited to."""
    if not key.has_scope(scope):
        raise MissingScope(f"This service key lacks the {scope} scope; an admin can add it to the key in admin.")
    allowed = set(key.accounts.values_list("pk", flat=True))
    if allowed and not account_ids <= allowed:
        raise MissingScope("This service key may not post to the account of this conversion action.")


def service_key_accounts_only(queryset, key: ServiceApiKey, *, account_field: str = "account"):
    """The rows of the accounts a key is limited to (all rows for a key limited to none)."""
    allowed = list(key.accounts.values_list("pk", flat=True))
    return queryset.filter(**{f"{account_field}__in": allowed}) if allowed else queryset
