"""Throttles and lockouts key on the real client address: a forwarding header counts only when
a proxy is configured and the connection came through it."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory

from adsplatform.client_ip import client_ip

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"


def _allowed_per_window() -> int:
    return int(django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["auth"].split("/")[0])


def _guess(api_client, n: int, **headers) -> int:
    # A new username each time, so django-axes' username+address lockout never answers first.
    body = {"username": f"someone{n}", "password": "wrong-password"}
    return api_client.post(TOKEN_URL, body, format="json", **headers).status_code


@pytest.fixture
def no_proxy(settings):
    """`make run`: nothing in front of the app."""
    settings.TRUSTED_PROXY_CLIENT_IP_HEADER = ""
    settings.TRUSTED_PROXY_NETWORKS = []


@pytest.fixture
def behind_fly(settings):
    """fly.toml's [env]: Fly's proxy names the client in Fly-Client-IP."""
    settings.TRUSTED_PROXY_CLIENT_IP_HEADER = "Fly-Client-IP"
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXY_NETWORKS = []


@pytest.mark.django_db
def test_a_new_x_forwarded_for_per_attempt_does_not_escape_the_throttle(api_client, no_proxy):
    allowed = _allowed_per_window()
    codes = [
        _guess(api_client, n, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}", HTTP_FLY_CLIENT_IP=f"203.0.113.{n}")
        for n in range(allowed + 3)
    ]
    assert set(codes[:allowed]) == {401}
    assert set(codes[allowed:]) == {429}


@pytest.mark.django_db
def test_the_refresh_endpoint_ignores_forwarding_headers_too(api_client, no_proxy):
    codes = [
        api_client.post(
            REFRESH_URL, {"refresh": f"not-a-token-{n}"}, format="json", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}"
        ).status_code
        for n in range(_allowed_per_window() + 1)
    ]
    assert codes[-1] == 429


@pytest.mark.django_db
def test_behind_fly_each_client_has_its_own_budget(api_client, behind_fly):
    allowed = _allowed_per_window()
    codes = [_guess(api_client, n, HTTP_FLY_CLIENT_IP="203.0.113.7") for n in range(allowed + 1)]
    assert codes[-1] == 429
    # Another client behind the same proxy (same socket peer) is not throttled by the first one.
    assert _guess(api_client, 999, HTTP_FLY_CLIENT_IP="203.0.113.8") == 401
    # And the first cannot get out by adding an X-Forwarded-For of its choosing.
    assert _guess(api_client, 1000, HTTP_FLY_CLIENT_IP="203.0.113.7", HTTP_X_FORWARDED_FOR="192.0.2.1") == 429


def _request(remote_addr: str = "10.0.0.2", **headers):
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)


def test_without_a_proxy_the_peer_is_the_client(no_proxy):
    request = _request(HTTP_X_FORWARDED_FOR="198.51.100.1", HTTP_FLY_CLIENT_IP="198.51.100.2")
    assert client_ip(request) == "10.0.0.2"


def test_behind_fly_the_proxy_header_names_the_client(behind_fly):
    assert client_ip(_request(HTTP_FLY_CLIENT_IP="2001:db8::7")) == "2001:db8::7"
    # A request that did not come through the proxy (no header) is its own peer.
    assert client_ip(_request()) == "10.0.0.2"
    # Garbage in the header is not a key anyone may choose.
    assert client_ip(_request(HTTP_FLY_CLIENT_IP="not-an-address")) == "10.0.0.2"


def test_the_header_counts_only_from_the_trusted_proxy_networks(behind_fly, settings):
    settings.TRUSTED_PROXY_NETWORKS = ["172.16.0.0/12"]
    assert client_ip(_request("172.19.0.5", HTTP_FLY_CLIENT_IP="203.0.113.9")) == "203.0.113.9"
    assert client_ip(_request("198.51.100.50", HTTP_FLY_CLIENT_IP="203.0.113.9")) == "198.51.100.50"


def test_a_list_header_is_read_from_the_right(settings):
    """X-Forwarded-For grows to the right; what left of our proxies' entry the client wrote."""
    settings.TRUSTED_PROXY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.TRUSTED_PROXY_NETWORKS = []
    settings.TRUSTED_PROXY_COUNT = 1
    spoofed = _request(HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.10")
    assert client_ip(spoofed) == "203.0.113.10"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(_request(HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.10, 10.1.1.1")) == "203.0.113.10"
    # Fewer hops than proxies: the header was not written by them.
    assert client_ip(_request(HTTP_X_FORWARDED_FOR="203.0.113.10")) == "10.0.0.2"
