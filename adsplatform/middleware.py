"""Cross-cutting request handling: liveness, request ids, the access line, the body-size guard,
the receivers' short path."""

from __future__ import annotations

import re
import time
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import resolve, reverse

from adsplatform import logging as ads_logging
from adsplatform.errors import error_response

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only when it is short and plain, so it is safe to log and echo.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_API_PATH = re.compile(r"^/(api|v1)/")


class HealthzMiddleware:
    """Answer liveness probes before host validation and the https redirect.

    Load balancers probe over plain http with whatever Host header they like; liveness
    says only that the process runs, so it needs neither.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz" and request.method in ("GET", "HEAD"):
            return JsonResponse({"status": "ok"})
        return self.get_response(request)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        # Left set until request_finished: Django logs errors after middleware returns.
        ads_logging.set_request_id(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class AccessLogMiddleware:
    """One access line per request (``adsplatform.logging.access_log_write``).

    Right below the request id, so the line carries it, and above MachineReceiverMiddleware, so
    the receivers' short path gets its line too. Django turns exceptions into responses at every
    layer below; ours still sees one, and a line is written even if one escapes. The duration
    ends when the response is handed back, before a streamed body is sent.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        except Exception:
            ads_logging.access_log_write(request, 500, time.perf_counter() - started)
            raise
        ads_logging.access_log_write(request, response.status_code, time.perf_counter() - started)
        return response


class BodySizeLimitMiddleware:
    """Refuse API bodies over MAX_REQUEST_BODY_BYTES with a JSON 413 before parsing.

    DRF reads the body as a stream and so never hits Django's own limit; reading
    ``request.body`` here applies it (for chunked bodies too) and caches the bytes,
    which webhook signature checks need anyway.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("POST", "PUT", "PATCH") and _API_PATH.match(request.path_info):
            limit = settings.MAX_REQUEST_BODY_BYTES
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            too_big = declared > limit
            if not too_big:
                try:
                    too_big = len(request.body) > limit
                except RequestDataTooBig:
                    too_big = True
            if too_big:
                return error_response(
                    413,
                    "request_too_large",
                    f"The request body is larger than {limit} bytes; send smaller batches.",
                    {"max_bytes": limit},
                )
        return self.get_response(request)


class MachineReceiverMiddleware:
    """Hand machine-to-machine receivers their request past the browser-facing middleware.

    Make.com, Zapier and Google post JSON with a secret: no session, cookie, CSRF token, user,
    flash message, frame or CORS preflight is ever involved. Everything above this middleware
    (liveness, request id, access line, request metrics, https redirect and security headers, the
    body-size guard) still runs; the rest of the chain and URL resolution (~0.15 ms, a sixth of what a
    receipt costs a web process) are skipped by calling the view that ``urls.py`` maps the path
    to, found once by URL name (``MACHINE_RECEIVER_URL_NAMES``).

    Kept for what ``make bench`` measures (``bench/bench_webhooks.py``, which serves the platform
    without it, ``bench/stock_settings.py``, in the same alternating rounds): 1,287 webhooks/s with
    it against 878/s without (+46%, median of 3 rounds, 32 clients, 2 workers on 2 shared cores).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._matches = None  # resolved on first use: urls.py imports every app's views

    def _receivers(self):
        if self._matches is None:
            self._matches = {
                path: resolve(path) for path in (reverse(name) for name in settings.MACHINE_RECEIVER_URL_NAMES)
            }
        return self._matches

    def __call__(self, request):
        match = self._receivers().get(request.path_info)
        if match is None:
            return self.get_response(request)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        # DRF answers with a template response, rendered by Django's handler on the long path.
        render = getattr(response, "render", None)
        return render() if callable(render) else response
