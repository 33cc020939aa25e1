"""Which days have data: an account's metrics exist from its first synced day (``AdAccount.data_from``)
on. A day before it was never read, so its metrics are unknown ("no data"), not zero; a day after
it with no row is a real zero (the platforms report no row for a day without activity).

Reads answer with the first day of the asked window that has data (``data_from``) and, when no
day of the window has any, with null metrics instead of zeros."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from campaigns.selectors import METRIC_FIELDS


def days_of(date_from: date, date_to: date) -> list[date]:
    """Every day from ``date_from`` to ``date_to``, both included."""
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


def window_data_from(data_from: date | None, date_from: date, date_to: date) -> date | None:
    """The first day of ``date_from``…``date_to`` with synced data, or None when no day has any."""
    if data_from is None or data_from > date_to:
        return None
    return max(data_from, date_from)


def has_data(data_from: date | None, day: date) -> bool:
    return data_from is not None and day >= data_from


NO_METRICS: dict[str, Any] = {
    **dict.fromkeys(METRIC_FIELDS),
    "ctr": None,
    "cpc_micros": None,
    "cpa_micros": None,
    "roas": None,
}


def daily_series(rows: list[dict[str, Any]], *, data_from: date | None, days: list[date]) -> list[dict[str, Any]]:
    """Every day of the window: the synced row, zeros for a synced day without one, and null
    metrics for a day before the first synced day."""
    by_day = {row["date"]: row for row in rows}
    zeros = dict.fromkeys(METRIC_FIELDS, 0)
    series = []
    for day in days:
        if not has_data(data_from, day):
            series.append({"date": day, **dict.fromkeys(METRIC_FIELDS), "has_data": False})
            continue
        row = by_day.get(day, zeros)
        series.append(
            {
                "date": day,
                **{field: row[field] for field in METRIC_FIELDS},
                "conversions": float(row["conversions"]),
                "has_data": True,
            }
        )
    return series
