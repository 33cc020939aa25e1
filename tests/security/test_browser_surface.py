"""What a browser reaches: the API docs from our own static files, a Content-Security-Policy on
every page, and /metrics behind METRICS_TOKEN."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_load_nothing_from_another_origin(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assets = _assets(html)
    assert assets, "the page loads its UI from somewhere"
    for url in assets:
        assert not url.startswith(("http:", "https:", "//")), url
    # Every script and stylesheet it names is one of our static files (drf-spectacular-sidecar).
    for url in assets:
        if url.startswith("/static/"):
            assert finders.find(url.removeprefix("/static/")), url
    assert "<script>" not in html  # no inline script: the policy would block it
    assert _policy(response)["script-src"] == ["'self'"] + [
        v for v in _policy(response)["script-src"] if v.startswith("'nonce-")
    ]


def test_swagger_start_up_script_is_served_as_a_file(client):
    page = client.get("/api/docs/").content.decode()
    script = next(url for url in _assets(page) if "script" in url and "/static/" not in url)
    response = client.get(script.replace("&amp;", "&"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in response.content and b"/api/schema/" in response.content


def test_schema_is_still_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "IBVI Ads Platform API"


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/", "/api/redoc/"])
def test_every_page_has_a_strict_policy(client, path):
    policy = _policy(client.get(path))
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_admin_dashboard_renders_under_the_policy(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    # Any inline script the admin pages carry must hold this response's nonce (django-csp puts
    # one in the header only when a template asked for it).
    nonces = [v[7:-1] for v in _policy(response)["script-src"] if v.startswith("'nonce-")]
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or "application/json" in tag or any(f'nonce="{n}"' in tag for n in nonces), tag
    assert "ads-dashboard" in html or "Operator dashboard" in html


def test_the_sync_progress_script_carries_the_nonce(client, staff_user):
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/campaigns/syncrun/")
    request.csp_nonce = "n0nce-for-test"
    html = render_to_string("admin/campaigns/syncrun/auto_refresh.html", {"message": "Syncing"}, request=request)
    assert '<script nonce="n0nce-for-test">' in html


def test_metrics_open_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


def test_metrics_ask_for_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = "scrape-secret-0123456789"
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert b"django_http_requests" not in refused.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-secret-0123456789").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-0123456789")
    assert allowed.status_code == 200
    assert b"django_http_requests_total_by_method_total" in allowed.content
