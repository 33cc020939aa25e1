"""Thin Celery tasks of the connections app."""

from __future__ import annotations

from celery import shared_task

from connections import services


@shared_task(name="connections.check_connections")
def check_connections() -> int:
    """Beat: re-exchange Meta user tokens near expiry and try every connection's credentials; a
    refusal flags the connection (needs_reconnect), pauses its syncs and opens an alert."""
    return services.connections_check_all().flagged
