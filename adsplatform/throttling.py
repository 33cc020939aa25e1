"""DRF throttles keyed on the real client address (adsplatform.client_ip), not on X-Forwarded-For."""

from __future__ import annotations

from rest_framework.throttling import ScopedRateThrottle

from adsplatform.client_ip import client_ip


class ClientAddressScopedRateThrottle(ScopedRateThrottle):
    """DRF's ScopedRateThrottle with get_ident replaced.

    DRF's own get_ident keys anonymous requests on the whole X-Forwarded-For value unless
    NUM_PROXIES is set, so a client choosing that header chooses its bucket.
    """

    def get_ident(self, request) -> str:
        return client_ip(request)
