"""One error shape for every API answer: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from campaigns import access

logger = logging.getLogger(__name__)

_MESSAGES_BY_CODE = {
    "invalid": "The request has invalid fields; see details.",
    "parse_error": "The request body is not valid JSON.",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(http_status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=http_status)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_message(value)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict) -> Any:
    """DRF's handler, reshaped. Unexpected exceptions stay 500s (and are bugs)."""
    if isinstance(exc, Http404 | access.NotVisible):
        exc = exceptions.NotFound()
    elif isinstance(exc, access.AccessDenied):
        exc = exceptions.PermissionDenied(str(exc))
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        message = _MESSAGES_BY_CODE["invalid"]
        details = detail
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        if isinstance(detail, dict):
            # simplejwt answers {"detail", "code", "messages"}; keep its specifics as details.
            message = str(detail.get("detail", _first_message(detail)))
            code = str(detail.get("code", code)) if not isinstance(detail.get("code"), list) else code
            details = {k: v for k, v in detail.items() if k not in ("detail", "code")} or None
        else:
            message = str(detail)
            details = None
        if code == "parse_error":
            message = f"{_MESSAGES_BY_CODE['parse_error']} {message}".strip()
    response.data = error_body(str(code), message, details)
    return response


def _is_api(request) -> bool:
    return request.path_info.startswith(("/api/", "/v1/"))


def handler404(request, exception=None):
    if _is_api(request):
        return error_response(404, "not_found", f"No endpoint or object at {request.path_info}.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return error_response(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on our side; it has been logged. Retry later.",
            {"request_id": getattr(request, "request_id", None)},
        )
    from django.views.defaults import server_error

    return server_error(request)
