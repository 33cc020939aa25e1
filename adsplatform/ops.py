"""Liveness, readiness and Prometheus metrics: what the platform's operators scrape."""

from __future__ import annotations

import hmac
import logging
import os
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from adsplatform.metrics import database_collectors

logger = logging.getLogger(__name__)


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("value written was not read back")
    cache.delete(key)


def _check_broker() -> None:
    # A fresh connection from the settings (not the Celery app's pool): the check must
    # not disturb, or be satisfied by, connections the app already holds.
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)


READINESS_CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}


def readyz(request):
    failed = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("readiness check failed", extra={"check": name, "reason": failed[name]})
    if failed:
        return JsonResponse({"status": "unavailable", "failed": sorted(failed), "reasons": failed}, status=503)
    return JsonResponse({"status": "ok", "checks": sorted(READINESS_CHECKS)})


def _metrics_authorized(request) -> bool:
    expected = getattr(settings, "METRICS_TOKEN", "") or ""
    if not expected:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def metrics(request):
    """Prometheus text format; with METRICS_TOKEN set, only for ``Authorization: Bearer <token>``.

    Under several gunicorn workers each process writes its counters to
    PROMETHEUS_MULTIPROC_DIR and this view merges them; gauges read from the database
    at scrape time are correct whichever process did the work.
    """
    if not _metrics_authorized(request):
        response = HttpResponse("Send Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    scrape_registry = CollectorRegistry()
    for collector in database_collectors():
        scrape_registry.register(collector)
    output += generate_latest(scrape_registry)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
