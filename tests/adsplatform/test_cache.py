"""The Redis cache fails soft: an outage costs speed, never a request."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache

from webhooks.models import WebhookEvent, WebhookSource

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_away(settings):
    """The cache pointed at a Redis port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "adsplatform.cache.ResilientRedisCache",
            "LOCATION": UNREACHABLE,
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }


def test_reads_miss_and_writes_are_dropped(redis_away):
    assert cache.get("k", "fallback") == "fallback"
    cache.set("k", 1)  # no exception
    assert cache.add("lock", 1) is False  # a lock is not taken: the caller skips this round
    assert cache.get_many(["a", "b"]) == {}
    with pytest.raises(ValueError):
        cache.incr("counter")


@pytest.mark.django_db
def test_a_webhook_is_accepted_and_stored_while_redis_is_away(client, redis_away):
    WebhookSource.objects.create(name="zapier", kind=WebhookSource.Kind.RELAY, secret="relay-secret-0123456789")
    response = client.post(
        "/api/v1/webhooks/zapier",
        data=json.dumps({"lead_id": "L-1", "email": "lead@example.com"}),
        content_type="application/json",
        HTTP_X_WEBHOOK_SECRET="relay-secret-0123456789",
    )
    assert response.status_code == 202, response.content
    assert WebhookEvent.objects.count() == 1


def test_one_redis_client_serves_every_call_and_thread(settings):
    """Django builds a redis.Redis per cache call; ours keeps one per pool, shared by threads."""
    from concurrent.futures import ThreadPoolExecutor

    from django.core.cache import caches

    if not settings.REDIS_URL:
        pytest.skip("the Redis cache needs REDIS_URL")
    backend = caches["default"]
    clients = {id(backend._cache.get_client("k")), id(backend._cache.get_client("k", write=True))}

    def round_trip(index: int) -> object:
        backend.set(f"shared-client-{index}", index)
        return backend.get(f"shared-client-{index}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(round_trip, range(64)))
    assert answers == list(range(64))  # each thread read its own write through the one client
    assert len(clients) == 1
    assert backend._cache.get_client("k") is backend._cache.get_client("other", write=True)
