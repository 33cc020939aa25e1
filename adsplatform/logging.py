"""JSON log lines with the request id of the request (or task) that wrote them, and the access line."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

from django.utils.functional import SimpleLazyObject, empty

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else passed through `extra=` is logged as a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "request_id"}
)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
        }
        for key, value in vars(record).items():
            # Django attaches the request object itself; its repr adds nothing safe to log.
            if key not in _STANDARD_ATTRS and key != "request" and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# What http.server's log_request hands runserver's logger for each request: request line, status, size.
_SERVER_REQUEST_LINE = '"%s" %s %s'


class NotARequestLine(logging.Filter):
    """Drops runserver's per-request lines (django.server): they repeat the access line, query
    string included. Its other messages (bad requests, "HTTPS on an HTTP server") stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _SERVER_REQUEST_LINE


# --- The access line: one per request (adsplatform.middleware.AccessLogMiddleware) --------

access_logger = logging.getLogger("adsplatform.access")
# Probes answer every few seconds; their successes go at DEBUG so they do not bury the traffic.
# A failing probe is logged like any other request. (/healthz on GET/HEAD is answered before the
# access log by HealthzMiddleware and has no line at all.)
_PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _who(request) -> tuple[int | None, int | None]:
    """(user id, service key id) of whoever the request authenticated as, if anyone did."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        # AuthenticationMiddleware's lazy user: read only once the view has, so that the line
        # never costs a session or user query of its own. DRF (JWT, service keys) replaces it
        # with the user it authenticated.
        user = None if user._wrapped is empty else user._wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None, None
    # conversions.authentication.ServicePrincipal: an X-Service-Auth caller, known by its key.
    key = getattr(user, "key", None)
    if key is not None:
        return None, key.pk
    return user.pk, None


def access_log_identify_source(request, source_id: int) -> None:
    """Name the webhook source a receiver authenticated, for this request's access line.

    Receivers authenticate no user (the secret names a source), so the line would say nobody.
    ``request`` may be DRF's Request: the id goes on the Django request the middleware sees.
    """
    getattr(request, "_request", request).webhook_source_id = source_id


def access_log_write(request, status: int, duration_seconds: float) -> None:
    """The request's access line: what was asked, the answer, how long it took, and by whom.

    The path is written without its query string (query strings can carry keys); no header,
    body or token is ever read here. Every line is INFO: Django's own django.request logger
    already writes each 4xx at WARNING and each 5xx at ERROR (with the traceback), once.
    """
    level = logging.DEBUG if status < 400 and request.path_info in _PROBE_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    user_id, service_key_id = _who(request)
    access_logger.log(
        level,
        "%s %s %s",
        request.method,
        request.path,
        status,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(duration_seconds * 1000, 2),
            "user_id": user_id,
            "service_key_id": service_key_id,
            "webhook_source_id": getattr(request, "webhook_source_id", None),
        },
    )


def _clear_request_id(**_: object) -> None:
    _request_id.set(None)


def connect_signals() -> None:
    from django.core.signals import request_finished

    request_finished.connect(_clear_request_id, dispatch_uid="ads_clear_request_id")
