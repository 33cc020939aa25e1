"""Retry backoff and a circuit breaker: the one copy of each, for every part of the platform.

Standard library only, so that scripts/supervisor.py (which runs outside Django) uses the same
backoff as the tasks and services.

The Celery tasks that call an ad platform keep ``self.retry(countdown=platform_task_retry_delay(...))``
rather than Celery's ``autoretry_for``/``retry_backoff``/``retry_jitter``: those compute the countdown
from the retry count alone (with jitter down to zero), so they cannot wait what a platform's Retry-After
asked, nor record the retry time on the run row (``sync_run_retry_at``, ``change_push_retry_at``) before
the retry is queued.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

# Past this many doublings every schedule is at its cap already; the limit keeps the float finite
# for a caller whose attempt count keeps growing (an alert notification failing for weeks).
_MAX_DOUBLINGS = 64


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: tuple[float, float] | None = None,
    max_step: float | None = None,
    retry_after: float | None = None,
    retry_after_spread: float = 0.0,
    not_before: float = 0.0,
) -> float:
    """Seconds to wait after the ``attempt``-th failure in a row (1, 2, ...): ``base`` doubling with
    each attempt, never above ``cap``.

    ``jitter`` (low, high): the step is multiplied by a random factor in that range, so callers that
    failed together do not come back together. ``max_step``: the doubling stops there, before the
    jitter (so the jitter still spreads callers at the top of the schedule).
    ``retry_after``: the other side said when: wait that (plus up to ``retry_after_spread`` seconds)
    instead of the backoff. ``not_before``: wait at least this long, backoff or not.
    """
    if retry_after is not None:
        delay = retry_after + (random.uniform(0, retry_after_spread) if retry_after_spread else 0.0)
    else:
        step = base * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        if max_step is not None:
            step = min(step, max_step)
        delay = step * random.uniform(*jitter) if jitter is not None else step
    return min(max(delay, not_before), cap)


def platform_task_retry_delay(exc: BaseException, retries: int, *, cap: float) -> float:
    """The retry schedule of a Celery task whose ad-platform call failed (``retries``: Celery's count,
    0 before the first retry): 4 s doubling up to 600 s, ±20 %. An error that carries
    ``retry_after_seconds`` (a platform's quota answer) waits that plus up to 5 s instead, so many
    accounts held by one quota don't return at the same second."""
    return backoff_delay(
        retries + 1,
        base=4,
        max_step=600,
        jitter=(0.8, 1.2),
        retry_after=getattr(exc, "retry_after_seconds", None),
        retry_after_spread=5,
        cap=cap,
    )


class CircuitBreaker:
    """After a failure, skip the resource for ``pause_seconds`` instead of having every caller wait
    for it to fail again (a connection timeout each).

    ``trip`` opens it (again: a failure while open extends the pause); ``on_open`` is called with the
    failure when it goes from closed to open, so an outage is logged once, not on every call.
    """

    def __init__(
        self,
        pause_seconds: float,
        *,
        on_open: Callable[[BaseException | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pause_seconds = pause_seconds
        self._on_open = on_open
        self._clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def trip(self, exc: BaseException | None = None) -> None:
        with self._lock:
            was_open = self.is_open()
            self._open_until = self._clock() + self.pause_seconds
        if not was_open and self._on_open is not None:
            self._on_open(exc)

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0
