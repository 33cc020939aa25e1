"""One JSON access line per request: who asked what, the answer and how long it took; never a
query string, header, body or token."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client
from django.urls import path
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from adsplatform import logging as ads_logging
from adsplatform import urls as project_urls
from conversions import services as conversion_services
from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json, switch_broker, take_published_tasks
from webhooks import services as webhook_services
from webhooks.models import WebhookSource

ZAPIER = "/api/v1/webhooks/zapier"
# Looks like what a client might put in a query string by mistake; must never reach a line.
QUERY_SECRET = "qs-secret-5f1c9e0a7b"


def _boom(request):
    raise RuntimeError("the view broke")


# The project's URLs plus one view that raises: a real 500 through the whole stack.
urlpatterns = [path("boom", _boom), *project_urls.urlpatterns]
handler404 = project_urls.handler404
handler500 = project_urls.handler500


@pytest.fixture
def log_lines():
    """Every line the root logger writes, as the production handler formats it, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ads_logging.JsonFormatter())
    handler.addFilter(ads_logging.RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    root.removeHandler(handler)


@pytest.fixture
def raw_log(log_lines):
    """The same lines as written, to search for what must never be in them."""
    return lambda: "\n".join(json.dumps(line) for line in log_lines())


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "adsplatform.access"]


@pytest.fixture
def relay_source(db, settings):
    """The Make.com/Zapier source, with receipts published to the in-memory broker."""
    from adsplatform.celery import app as celery_app

    original = celery_app.conf.broker_url
    switch_broker(settings, "memory://")
    take_published_tasks()
    webhook_services.webhook_sources_invalidate()
    yield WebhookSource.objects.create(name="zapier", kind=WebhookSource.Kind.RELAY, secret=RELAY_SECRET)
    webhook_services.background_publisher.join()
    take_published_tasks()
    switch_broker(settings, original)
    webhook_services.webhook_sources_invalidate()


def test_a_jwt_users_get_logs_one_line_with_who_status_duration_and_id_but_no_query(user, log_lines, raw_log):
    token = str(RefreshToken.for_user(user).access_token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.get(f"/api/v1/campaigns/?google_key={QUERY_SECRET}", HTTP_X_REQUEST_ID="req-access-1")

    assert response.status_code == 200
    [line] = access_lines(log_lines())
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/campaigns/"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["request_id"] == "req-access-1" == response["X-Request-ID"]
    assert line["user_id"] == user.pk
    assert line["service_key_id"] is None
    assert line["message"] == "GET /api/v1/campaigns/ 200"
    written = raw_log()
    assert "?" not in line["path"] and "google_key" not in json.dumps(line)
    assert QUERY_SECRET not in written
    assert token not in written


def test_a_session_user_is_named_by_id(client, staff_user, log_lines):
    client.force_login(staff_user)

    assert client.get("/admin/").status_code == 200

    [line] = access_lines(log_lines())
    assert (line["path"], line["status"], line["user_id"]) == ("/admin/", 200, staff_user.pk)


def test_a_service_key_caller_is_named_by_key_id_never_by_key(db, log_lines, raw_log):
    key, raw_key = conversion_services.service_api_key_create(name="checkout service")
    client = APIClient()
    client.credentials(HTTP_X_SERVICE_AUTH=raw_key)

    assert client.get("/api/v1/conversion-actions/").status_code == 200

    [line] = access_lines(log_lines())
    assert (line["status"], line["service_key_id"], line["user_id"]) == (200, key.pk, None)
    assert raw_key not in raw_log() and key.prefix not in raw_log()


def test_a_webhook_on_the_receivers_short_path_logs_one_line_without_its_body(relay_source, log_lines, raw_log):
    payload = flat_payload()
    response = post_json(
        APIClient(), ZAPIER, payload, **{"X-Webhook-Secret": RELAY_SECRET, "X-Request-ID": "make-run-7"}
    )

    assert response.status_code == 202
    # The short path really was taken: no session middleware ran.
    assert not hasattr(response.wsgi_request, "session")
    [line] = access_lines(log_lines())
    assert (line["method"], line["path"], line["status"]) == ("POST", ZAPIER, 202)
    assert line["request_id"] == "make-run-7"
    assert line["user_id"] is None and line["service_key_id"] is None
    # Who posted: the source its secret authenticated (a receiver has no user).
    assert line["webhook_source_id"] == relay_source.pk
    written = raw_log()
    assert RELAY_SECRET not in written
    for value in (payload["email"], payload["phone"], payload["gclid"], payload["last_name"]):
        assert value not in written


def test_a_refused_webhook_logs_one_access_line(relay_source, log_lines, raw_log):
    response = post_json(APIClient(), ZAPIER, flat_payload(), **{"X-Webhook-Secret": "wrong-secret-123456"})

    assert response.status_code == 401
    lines = log_lines()
    [line] = access_lines(lines)
    assert line["status"] == 401
    assert line["webhook_source_id"] is None  # the secret proved no source
    # Django's own warning for the 4xx stays, once, beside it (same request id).
    [warning] = [other for other in lines if other["logger"] == "django.request"]
    assert warning["level"] == "WARNING" and warning["request_id"] == line["request_id"]
    assert "wrong-secret-123456" not in raw_log()


def test_a_401_with_a_bad_token_logs_one_line_without_the_authorization_value(user, log_lines, raw_log):
    token = str(RefreshToken.for_user(user).access_token)
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")

    response = client.get("/api/v1/campaigns/")

    assert response.status_code == 401
    [line] = access_lines(log_lines())
    assert (line["path"], line["status"], line["user_id"]) == ("/api/v1/campaigns/", 401, None)
    written = raw_log()
    assert forged not in written and "Bearer" not in written and "authorization" not in written.lower()


def test_a_404_logs_one_access_line(client, log_lines, raw_log):
    response = client.get(f"/api/v1/missing/?token={QUERY_SECRET}")

    assert response.status_code == 404
    lines = log_lines()
    [line] = access_lines(lines)
    assert (line["path"], line["status"], line["level"]) == ("/api/v1/missing/", 404, "INFO")
    assert len([other for other in lines if other["logger"] == "django.request"]) == 1
    assert QUERY_SECRET not in raw_log()


@pytest.mark.urls(__name__)
def test_a_500_logs_one_access_line_and_the_traceback_once(db, log_lines):
    response = Client(raise_request_exception=False).get("/boom")

    assert response.status_code == 500
    lines = log_lines()
    [line] = access_lines(lines)
    assert (line["path"], line["status"], line["level"]) == ("/boom", 500, "INFO")
    [error] = [other for other in lines if other["logger"] == "django.request"]
    assert error["level"] == "ERROR" and "RuntimeError: the view broke" in error["exc_info"]
    assert error["request_id"] == line["request_id"]


def test_probes_succeeding_are_logged_only_at_debug(db, client, settings, log_lines):
    settings.METRICS_TOKEN = ""
    access = logging.getLogger("adsplatform.access")

    assert client.get("/metrics").status_code == 200
    assert access_lines(log_lines()) == [], "a passing probe writes nothing at INFO"

    previous = access.level
    access.setLevel(logging.DEBUG)
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        access.setLevel(previous)
    [line] = access_lines(log_lines())
    assert (line["path"], line["level"]) == ("/metrics", "DEBUG")


def test_a_failing_probe_is_logged_like_any_request(client, settings, log_lines):
    settings.METRICS_TOKEN = "metrics-token-0123456789"

    assert client.get("/metrics").status_code == 401

    [line] = access_lines(log_lines())
    assert (line["path"], line["status"], line["level"]) == ("/metrics", 401, "INFO")


def test_runserver_request_lines_are_dropped_and_its_other_messages_kept():
    """runserver's line carries the query string and repeats the access line; its errors stay."""
    server = logging.getLogger("django.server")
    request_line = server.makeRecord(
        "django.server",
        logging.INFO,
        __file__,
        0,
        '"%s" %s %s',
        (f"GET /x?k={QUERY_SECRET} HTTP/1.1", "200", "2"),
        None,
        extra={"status_code": 200},
    )
    https_hint = server.makeRecord(
        "django.server",
        logging.ERROR,
        __file__,
        0,
        "You're accessing the development server over HTTPS, but it only supports HTTP.",
        (),
        None,
        extra={"status_code": 500},
    )
    bad_request = server.makeRecord(
        "django.server", logging.INFO, __file__, 0, "code %d, message %s", (400, "Bad request syntax"), None
    )

    assert not server.filter(request_line)
    assert server.filter(https_hint) and server.filter(bad_request)
