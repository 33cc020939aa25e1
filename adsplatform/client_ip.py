"""The address a request really comes from, for throttles and login lockouts.

A forwarding header is trusted only when a proxy is configured (``TRUSTED_PROXY_CLIENT_IP_HEADER``)
and the connection came from it (``TRUSTED_PROXY_NETWORKS``, when set): anyone can send
``X-Forwarded-For``, and a key taken from it unconditionally lets a password guesser pick a fresh
throttle bucket for every attempt. With no proxy configured (``make run``) the socket's peer is the
client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _peer_is_trusted_proxy(peer: str) -> bool:
    networks = _networks(tuple(getattr(settings, "TRUSTED_PROXY_NETWORKS", ()) or ()))
    if not networks:
        # Configured without networks: the app is reachable only through the proxy (Fly's
        # http_service), so every peer is it.
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the trusted proxy's header when it applies, else the socket peer."""
    meta = request.META
    peer = meta.get("REMOTE_ADDR", "") or ""
    header = getattr(settings, "TRUSTED_PROXY_CLIENT_IP_HEADER", "") or ""
    if not header or not _peer_is_trusted_proxy(peer):
        return peer
    value = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
    # A list header (X-Forwarded-For) grows to the right at every hop: the entry our own
    # proxies appended is TRUSTED_PROXY_COUNT from the end; what lies left of it the client wrote.
    hops = [hop.strip() for hop in value.split(",") if hop.strip()]
    count = max(int(getattr(settings, "TRUSTED_PROXY_COUNT", 1) or 1), 1)
    if len(hops) < count:
        return peer
    candidate = hops[-count]
    return candidate if _is_address(candidate) else peer
