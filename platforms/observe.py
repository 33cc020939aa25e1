"""Every call to an ad platform, observed: a Prometheus counter plus listeners.

The adapters stay unaware: the registry hands out adapters wrapped in
``ObservedPlatform``, which times each method (and each streamed iteration) and reports
its outcome. Apps higher up subscribe with ``add_listener`` (the alerts of the
optimization app count error rates that way) without platforms importing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any

from prometheus_client import Counter, Histogram

from platforms.base import AuthError, PermanentError, PlatformError, RateLimitedError, TransientError

logger = logging.getLogger(__name__)

PLATFORM_CALLS = Counter(
    "ads_platform_calls_total", "Calls to the ad platforms by outcome.", ["platform", "operation", "outcome"]
)
PLATFORM_CALL_SECONDS = Histogram(
    "ads_platform_call_seconds", "Duration of calls to the ad platforms.", ["platform", "operation"]
)


@dataclass(frozen=True)
class PlatformCall:
    platform: str
    operation: str
    outcome: str  # ok | rate_limited | transient | auth | permanent | error
    seconds: float
    error_code: str = ""


CallListener = Callable[[PlatformCall], None]
_listeners: list[CallListener] = []


def add_listener(listener: CallListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: CallListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, PermanentError):
        return "permanent"
    return "error"


def record(platform: str, operation: str, started: float, exc: BaseException | None) -> None:
    call = PlatformCall(
        platform=platform,
        operation=operation,
        outcome=outcome_of(exc),
        seconds=time.monotonic() - started,
        error_code=exc.code if isinstance(exc, PlatformError) else "",
    )
    PLATFORM_CALLS.labels(platform, operation, call.outcome).inc()
    PLATFORM_CALL_SECONDS.labels(platform, operation).observe(call.seconds)
    for listener in list(_listeners):
        try:
            listener(call)
        except Exception:  # an observer must never break the call it observes
            logger.exception("platform call listener failed")


class ObservedPlatform:
    """Wraps an adapter; method calls and streamed results are observed, nothing else changes."""

    # Generators: observed when the stream ends (or fails), not when the call returns.
    _STREAMING = frozenset({"list_campaigns", "iter_daily_metrics", "list_ad_groups", "iter_ad_group_daily_metrics"})

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter
        self.platform = adapter.platform

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._adapter, name)
        if not callable(target) or name.startswith("_"):
            return target
        if name in self._STREAMING:
            return self._observe_stream(name, target)
        return self._observe_call(name, target)

    def _observe_call(self, name: str, target: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                result = target(*args, **kwargs)
            except BaseException as exc:
                record(self.platform, name, started, exc)
                raise
            record(self.platform, name, started, None)
            return result

        return call

    def _observe_stream(self, name: str, target: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(target)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            started = time.monotonic()
            try:
                yield from target(*args, **kwargs)
            except GeneratorExit:
                raise
            except BaseException as exc:
                record(self.platform, name, started, exc)
                raise
            record(self.platform, name, started, None)

        return stream

    @property
    def wrapped(self) -> Any:
        return self._adapter
