"""The Prometheus side of connection health: the gauge behind AdsConnectionNeedsReconnect."""

from __future__ import annotations

import pytest

from connections.models import Connection
from tests.connections.factories import GoogleOAuthConnectionFactory, SystemUserConnectionFactory

pytestmark = pytest.mark.django_db


def test_metrics_count_the_connections_needing_a_reconnect_per_platform(client):
    GoogleOAuthConnectionFactory(status=Connection.Status.NEEDS_RECONNECT)
    GoogleOAuthConnectionFactory()  # active
    SystemUserConnectionFactory()  # active

    text = client.get("/metrics").content.decode()

    assert 'ads_connections_needing_reconnect{platform="google"} 1.0' in text
    assert 'ads_connections_needing_reconnect{platform="meta"} 0.0' in text
