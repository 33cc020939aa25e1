"""The one backoff and the one circuit breaker: their bounds, caps and timing."""

from __future__ import annotations

import logging
import time

from adsplatform.resilience import CircuitBreaker, backoff_delay, platform_task_retry_delay

DRAWS = 500


def _draws(**kwargs) -> list[float]:
    return [backoff_delay(**kwargs) for _ in range(DRAWS)]


def test_without_jitter_the_delay_doubles_from_the_base_up_to_the_cap():
    assert [backoff_delay(n, base=30, cap=900) for n in range(1, 8)] == [30, 60, 120, 240, 480, 900, 900]
    assert backoff_delay(0, base=30, cap=900) == 30  # no failure counted yet: the first step


def test_jitter_stays_within_its_range_of_the_step():
    delays = _draws(attempt=3, base=10, cap=1000, jitter=(0.8, 1.2))
    assert min(delays) >= 32 and max(delays) <= 48
    assert max(delays) - min(delays) > 8  # actually spread, not one value


def test_max_step_stops_the_doubling_before_the_jitter():
    delays = _draws(attempt=20, base=4, max_step=600, jitter=(0.8, 1.2), cap=7200)
    assert min(delays) >= 480 and max(delays) <= 720
    assert max(delays) > 600  # the jitter still spreads callers at the top of the schedule


def test_the_cap_holds_for_any_attempt_even_one_that_keeps_growing():
    assert max(_draws(attempt=40, base=4, jitter=(0.8, 1.2), cap=900)) == 900
    assert backoff_delay(100_000, base=30, cap=900) == 900  # no float overflow


def test_retry_after_replaces_the_backoff_with_at_most_the_spread_added():
    delays = _draws(attempt=8, base=4, jitter=(0.8, 1.2), cap=900, retry_after=30, retry_after_spread=5)
    assert min(delays) >= 30 and max(delays) <= 35
    assert backoff_delay(1, base=10, cap=900, retry_after=7200) == 900


def test_not_before_is_a_floor_under_the_backoff():
    delays = _draws(attempt=1, base=30, jitter=(0.5, 1.0), cap=900, not_before=100)
    assert min(delays) == 100
    assert max(_draws(attempt=3, base=30, jitter=(0.5, 1.0), cap=900, not_before=100)) > 100
    assert backoff_delay(1, base=30, cap=900, not_before=86_400) == 900


class _Quota(Exception):
    retry_after_seconds = 60.0


def test_platform_task_schedule_starts_at_four_seconds_and_honours_a_quota_answer():
    first = [platform_task_retry_delay(RuntimeError("down"), 0, cap=900) for _ in range(DRAWS)]
    assert min(first) >= 3.2 and max(first) <= 4.8
    quota = [platform_task_retry_delay(_Quota(), 5, cap=900) for _ in range(DRAWS)]
    assert min(quota) >= 60 and max(quota) <= 65
    assert max(platform_task_retry_delay(RuntimeError("down"), n, cap=900) for n in range(30)) <= 900


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_a_trip_and_closes_after_the_pause():
    clock = _Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    assert not breaker.is_open()
    breaker.trip(ConnectionError("refused"))
    assert breaker.is_open()
    clock.now += 4.9
    assert breaker.is_open()
    clock.now += 0.2
    assert not breaker.is_open()


def test_a_trip_while_open_extends_the_pause_and_reset_closes_it():
    clock = _Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    breaker.trip()
    clock.now += 4
    breaker.trip()
    clock.now += 4
    assert breaker.is_open()  # 8 s after the first trip, 4 s after the second
    breaker.reset()
    assert not breaker.is_open()


def test_on_open_is_called_once_per_outage_with_the_failure():
    clock = _Clock()
    seen: list[BaseException | None] = []
    breaker = CircuitBreaker(5.0, on_open=seen.append, clock=clock)
    first, second, later = OSError("a"), OSError("b"), OSError("c")
    breaker.trip(first)
    breaker.trip(second)
    assert seen == [first]
    clock.now += 6
    breaker.trip(later)
    assert seen == [first, later]


def test_the_real_clock_closes_a_short_pause():
    breaker = CircuitBreaker(0.05)
    breaker.trip()
    assert breaker.is_open()
    time.sleep(0.06)
    assert not breaker.is_open()


def test_the_redis_cache_logs_one_warning_per_outage(settings, caplog):
    from django.core.cache import cache

    settings.CACHES = {
        "default": {
            "BACKEND": "adsplatform.cache.ResilientRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    with caplog.at_level(logging.WARNING, logger="adsplatform.cache"):
        for _ in range(3):
            assert cache.get("k", "fallback") == "fallback"
    assert [r.getMessage() for r in caplog.records] == ["cache unavailable; serving without it"]
