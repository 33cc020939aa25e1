"""Factories for connections, one per kind, stored as ``connections.services`` stores them.

The services that add a connection (the OAuth callback, a pasted service account key or system
user token) first ask the platform whether the credentials work, which needs the emulators;
these factories store what those services would have saved once the platform said yes, so a
test that is not about connecting does not have to sign in. The environment connection, which
stores nothing, is the service's own: ``connection_environment``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json

import factory
from django.utils import timezone

from campaigns.models import Platform
from connections.models import Connection
from connections.services import connection_environment
from platforms.registry import GOOGLE_ADS_SCOPE, META_SCOPES


class _StoredConnectionFactory(factory.django.DjangoModelFactory):
    """What every stored connection has after ``connections.services._store``: active, just checked."""

    class Meta:
        model = Connection

    status = Connection.Status.ACTIVE
    last_checked_at = factory.LazyFunction(timezone.now)
    created_by = "operator"


class GoogleOAuthConnectionFactory(_StoredConnectionFactory):
    """A Google login from the consent flow: a refresh token with the Google Ads scope."""

    platform = Platform.GOOGLE
    kind = Connection.Kind.OAUTH
    label = factory.Sequence(lambda n: f"Google Ads login ({n + 1} accounts)")
    refresh_token = factory.Sequence(lambda n: f"1//refresh-token-{n:06d}")
    scopes = factory.LazyFunction(lambda: [GOOGLE_ADS_SCOPE])


class MetaOAuthConnectionFactory(_StoredConnectionFactory):
    """A Meta login from the dialog: a long-lived user token, which expires in 60 days."""

    platform = Platform.META
    kind = Connection.Kind.OAUTH
    label = factory.Sequence(lambda n: f"Meta user {n}")
    external_user_id = factory.Sequence(lambda n: f"{100_000_000_000_000 + n}")
    access_token = factory.Sequence(lambda n: f"EAAB-long-lived-user-token-{n:06d}")
    scopes = factory.LazyFunction(lambda: list(META_SCOPES))
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=60))


@functools.cache
def _private_key_pem() -> str:
    """One RSA key for the test process: generating one per connection would cost a second a dozen."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(client_email: str) -> str:
    """A key file in the shape Google Cloud downloads (what an operator pastes)."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "ibvi-tests",
            "private_key_id": hashlib.sha256(client_email.encode()).hexdigest()[:40],
            "private_key": _private_key_pem(),
            "client_email": client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


class ServiceAccountConnectionFactory(_StoredConnectionFactory):
    """A Google service account: its key, the email it signs as, and the manager it goes through."""

    platform = Platform.GOOGLE
    kind = Connection.Kind.SERVICE_ACCOUNT
    external_user_id = factory.Sequence(lambda n: f"ads-sync-{n}@ibvi-tests.iam.gserviceaccount.com")
    label = factory.LazyAttribute(lambda c: f"{c.external_user_id} (via {c.login_customer_id})")
    login_customer_id = factory.Sequence(lambda n: f"{1_000_000_100 + n}")
    service_account_key = factory.LazyAttribute(lambda c: service_account_key(c.external_user_id))


class SystemUserConnectionFactory(_StoredConnectionFactory):
    """A Meta system user: a token that does not expire. Its business is optional, as in the form
    (``business_id=`` names one; the adapter then checks the token reaches it)."""

    platform = Platform.META
    kind = Connection.Kind.SYSTEM_USER
    label = factory.Sequence(lambda n: f"System user {n}")
    external_user_id = factory.Sequence(lambda n: f"{100_000_000_090_000 + n}")
    business_id = ""
    access_token = factory.Sequence(lambda n: f"EAAB-system-user-token-{n:06d}")
    scopes = factory.LazyFunction(lambda: list(META_SCOPES))


class EnvironmentConnectionFactory(factory.django.DjangoModelFactory):
    """The platform's environment connection, through ``connections.services.connection_environment``:
    there is one per platform (it stores no secret) and every account created without a
    connection already belongs to it, so this returns the existing one when there is."""

    class Meta:
        model = Connection

    platform = Platform.GOOGLE

    @classmethod
    def _create(cls, model_class, *, platform):
        return connection_environment(platform)
