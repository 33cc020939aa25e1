"""The one backoff: its bounds and caps."""

from __future__ import annotations

from adsplatform.resilience import backoff_delay, platform_task_retry_delay

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
