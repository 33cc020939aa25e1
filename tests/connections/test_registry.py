"""Adapters per connection: built from the connection's own credentials, cached per credential
version, the environment's unchanged."""

from __future__ import annotations

import pytest

from connections import services
from connections.models import Connection
from platforms.registry import get_platform, platform_for, platform_for_account
from platforms.sandbox.meta import oauth as meta_oauth
from tests.campaigns.factories import AdAccountFactory
from tests.connections.factories import SystemUserConnectionFactory

pytestmark = pytest.mark.django_db


def test_environment_connection_is_get_platform(sandbox):
    environment = services.connection_environment("google")
    assert platform_for(environment) is get_platform("google")
    account = AdAccountFactory(platform="google")  # made without a connection
    assert account.connection == environment and platform_for_account(account) is get_platform("google")


def test_one_adapter_per_connection_and_credential_version(sandbox):
    connection = SystemUserConnectionFactory(access_token=meta_oauth.AGENCY_SYSTEM_USER_TOKEN)
    first = platform_for(connection)
    assert platform_for(Connection.objects.get(pk=connection.pk)) is first  # cached across loads
    assert first is not get_platform("meta")
    first.check_credentials()  # the connection's own token, not the environment's
    connection.credential_version += 1
    connection.save()
    assert platform_for(connection) is not first  # new credentials, new adapter
