"""Request id and request-size guard, the two cross-cutting concerns of every request."""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

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
