"""The Prometheus side of connection health: the gauge behind AdsConnectionNeedsReconnect."""

from __future__ import annotations

import pytest

from connections.models import Connection

pytestmark = pytest.mark.django_db


def test_metrics_count_the_connections_needing_a_reconnect_per_platform(client):
    Connection.objects.create(platform="google", kind="oauth", label="ops@", status=Connection.Status.NEEDS_RECONNECT)
    Connection.objects.create(platform="google", kind="oauth", label="agency@", status=Connection.Status.ACTIVE)
    Connection.objects.create(platform="meta", kind="system_user", label="bo", status=Connection.Status.ACTIVE)

    text = client.get("/metrics").content.decode()

    assert 'ads_connections_needing_reconnect{platform="google"} 1.0' in text
    assert 'ads_connections_needing_reconnect{platform="meta"} 0.0' in text
