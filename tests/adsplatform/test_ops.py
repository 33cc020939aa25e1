"""Liveness, readiness (naming what is down) and the Prometheus endpoint."""

from __future__ import annotations

import pytest

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def test_healthz_answers_without_a_valid_host(client):
    response = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == ["broker", "cache", "database"]


@pytest.fixture
def redis_down(settings):
    """Cache and broker both pointed at a Redis port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "adsplatform.cache.ResilientRedisCache",
            "LOCATION": UNREACHABLE_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.CELERY_BROKER_URL = UNREACHABLE_REDIS
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_unreachable(client, redis_down):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker", "cache"]
    assert "database" not in body["reasons"]


def test_metrics_speaks_prometheus_text(client, db):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"django_http_requests_total_by_method_total" in response.content
