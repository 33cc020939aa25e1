"""Receivers take the short middleware path: the platform's own guards, none of the browser's."""

from __future__ import annotations

from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json
from webhooks.models import WebhookEvent

ZAPIER = "/api/v1/webhooks/zapier"


def test_a_receipt_keeps_request_id_and_security_headers_but_no_browser_middleware(api_client, relay_source):
    response = post_json(
        api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET, "X-Request-ID": "make-run-42"}
    )

    assert response.status_code == 202
    assert response["X-Request-ID"] == "make-run-42"  # request id middleware ran
    assert response["X-Content-Type-Options"] == "nosniff"  # security middleware ran
    assert response.wsgi_request.resolver_match.url_name == "webhook-zapier"
    # Session, CSRF, messages and clickjacking middleware did not: nothing of them is on the answer.
    assert "X-Frame-Options" not in response
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "session")
    assert WebhookEvent.objects.filter(pk=response.json()["id"]).exists()


def test_errors_on_the_short_path_keep_the_error_shape(api_client, relay_source):
    unauthorized = post_json(api_client, ZAPIER, flat_payload(), **{"X-Webhook-Secret": "wrong"})
    not_allowed = api_client.get(ZAPIER)

    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    assert not_allowed.status_code == 405
    assert not_allowed.json()["error"]["code"] == "method_not_allowed"


def test_other_paths_take_the_whole_chain(api_client, relay_source):
    response = post_json(api_client, ZAPIER + "/", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})

    assert response.status_code == 404  # resolved by urls.py as before, not by the short path
    assert response["X-Frame-Options"] == "DENY"
    assert WebhookEvent.objects.count() == 0
