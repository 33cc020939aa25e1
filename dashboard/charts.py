"""The dashboard's charts: SVG (``dashboard.svg``) with a table for each; pacing bars are
coloured by how far off pace they are (``dashboard.data.pacing_severity``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.utils.safestring import SafeString

from campaigns.models import Platform
from conversions.models import Conversion
from dashboard import svg
from dashboard.data import NO_DATA, PACING_FAR_OVER, PACING_ON, PACING_OVER, PACING_UNDER, Dashboard
from platforms.base import MICROS_PER_UNIT, format_money
from webhooks.models import Priority


@dataclass(frozen=True)
class ChartBlock:
    """One chart with its heading, its SVG, and the same numbers as a table."""

    chart_id: str
    heading: str
    svg: SafeString
    table_headers: list[str]
    table_rows: list[list[str]]
    note: str = ""


def _day_label(day: date) -> str:
    return day.strftime("%b %d").replace(" 0", " ")


def _money_value(currency: str):
    """A point's amount in full (its hover text), in the currency's own precision."""

    def format_value(micros: float) -> str:
        return format_money(int(micros), currency).removesuffix(f" {currency}")

    return format_value


def _money_tick(micros: float, step_micros: float) -> str:
    # The axis is in micros; its labels in units, as precise as the step (2.5k, 0.25).
    return svg.format_tick(micros / MICROS_PER_UNIT, step_micros / MICROS_PER_UNIT, compact=True)


def _percent_tick(value: float, step: float) -> str:
    return svg.format_tick(value, step, suffix="%")


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _lag_text(minutes: float) -> str:
    if minutes < 90:
        return f"{minutes:,.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:,.1f} h"
    return f"{minutes / 1440:,.1f} days"


def dashboard_charts(data: Dashboard) -> list[ChartBlock]:
    """The five charts: spend vs budget (one per platform and currency), pacing, uploads, leads, sync lag."""
    days = data.filters.days
    labels = [_day_label(day) for day in days]
    range_text = f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}"
    blocks: list[ChartBlock] = []

    for series in data.spend:
        platform = Platform(series.platform).label if series.platform in Platform.values else series.platform
        chart_id = f"chart-spend-{series.platform}-{series.currency_code.lower()}"
        synced = [spend for spend in series.spend_micros if spend is not None]
        total = sum(synced)
        no_data_days = len(series.spend_micros) - len(synced)
        no_data_text = (
            f" {no_data_days} day(s) before the first synced day have no data (no line, not 0)." if no_data_days else ""
        )
        blocks.append(
            ChartBlock(
                chart_id=chart_id,
                heading=f"Daily spend vs daily budget — {platform}, {series.currency_code}",
                svg=svg.line_chart(
                    chart_id=chart_id,
                    title=f"Daily spend against daily budget, {platform}, {series.currency_code}",
                    desc=(
                        f"{range_text}: spend {format_money(total, series.currency_code)} in total; "
                        f"enabled daily budgets sum to {format_money(series.daily_budget_micros, series.currency_code)}."
                        f"{no_data_text}"
                    ),
                    x_labels=labels,
                    series=[
                        svg.Series("Spend", series.spend_micros),
                        svg.Series(
                            "Daily budget (enabled now)", [series.daily_budget_micros] * len(days), reference=True
                        ),
                    ],
                    y_label=series.currency_code,
                    x_label="Day (account time zone)",
                    value_format=_money_value(series.currency_code),
                    tick_format=_money_tick,
                ),
                table_headers=["Day", "Spend", "Daily budget"],
                table_rows=[
                    [
                        f"{day:%Y-%m-%d}",
                        NO_DATA if spend is None else format_money(spend, series.currency_code),
                        format_money(series.daily_budget_micros, series.currency_code),
                    ]
                    for day, spend in zip(days, series.spend_micros, strict=True)
                ],
                note="Budgets are today's values; past changes are in Budget changes." + no_data_text,
            )
        )

    pacing_rows = [row for row in data.pacing if row.percent is not None]
    blocks.append(
        ChartBlock(
            chart_id="chart-pacing",
            heading="Pacing: month-to-date spend per account",
            svg=svg.hbar_chart(
                chart_id="chart-pacing",
                title="Pacing per account, month to date",
                desc="Each bar is the month's spend as a percentage of what the monthly cap (or, without one, "
                "the daily budgets) allows by today; the tick marks 100%.",
                rows=[
                    svg.HBar(
                        label=row.account.name,
                        value=row.percent or 0,
                        value_label=f"{row.percent:,.0f}% · {row.pace_label.removesuffix(' pace')} · "
                        f"{format_money(row.spend_month_micros, row.account.currency_code)}",
                        reference=100,
                        tone=row.tone,
                    )
                    for row in pacing_rows
                ],
                x_label="% of the allowance to date",
                tick_format=_percent_tick,
                reference_label="on pace (100%)",
                x_max=150.0,
            ),
            note=(
                f"Bar colours by severity: red far over pace (above {PACING_FAR_OVER:.0f}%), amber over "
                f"(above {PACING_OVER:.0f}%) or far under (below {PACING_UNDER:.0f}%), green on pace "
                f"({PACING_ON:.0f}–{PACING_OVER:.0f}%), blue under ({PACING_UNDER:.0f}–{PACING_ON:.0f}%)."
            ),
            table_headers=["Account", "Spend this month", "Allowed to date", "Monthly cap", "Pace", "Based on"],
            table_rows=[
                [
                    row.account.name,
                    NO_DATA
                    if row.spend_month_micros is None
                    else format_money(row.spend_month_micros, row.account.currency_code),
                    format_money(row.expected_to_date_micros, row.account.currency_code),
                    format_money(row.cap_micros, row.account.currency_code),
                    "—" if row.percent is None else f"{row.percent:,.1f}% ({row.pace_label})",
                    row.basis,
                ]
                for row in data.pacing
            ],
        )
    )

    status_labels = dict(Conversion.Status.choices)
    outcome_series = [svg.Series(status_labels[status], counts) for status, counts in data.conversion_outcomes.items()]
    rate = data.upload_success_rate
    blocks.append(
        ChartBlock(
            chart_id="chart-conversions",
            heading="Conversion uploads per day, by outcome",
            svg=svg.bar_chart(
                chart_id="chart-conversions",
                title="Conversion upload outcomes per day",
                desc=f"{range_text}: success rate "
                + ("n/a (nothing finished)" if rate is None else f"{rate}%")
                + ". Stacked bars by outcome.",
                x_labels=labels,
                series=outcome_series,
                y_label="Conversions",
                x_label="Day finished (site time zone)",
                value_format=_count,
                integer=True,
            ),
            table_headers=["Day", *(s.label for s in outcome_series), "Success rate"],
            table_rows=[
                [
                    f"{day:%Y-%m-%d}",
                    *(str(s.values[i]) for s in outcome_series),
                    _success_rate(data.conversion_outcomes, i),
                ]
                for i, day in enumerate(days)
            ],
        )
    )

    priority_labels = dict(Priority.choices)
    lead_series = [svg.Series(priority_labels[p], counts) for p, counts in data.leads_by_priority.items()]
    blocks.append(
        ChartBlock(
            chart_id="chart-leads",
            heading="Leads per day, by priority",
            svg=svg.bar_chart(
                chart_id="chart-leads",
                title="Leads per day by priority",
                desc=f"{range_text}: {sum(sum(counts) for counts in data.leads_by_priority.values())} leads, stacked by priority.",
                x_labels=labels,
                series=lead_series,
                y_label="Leads",
                x_label="Day received (site time zone)",
                value_format=_count,
                integer=True,
            ),
            table_headers=["Day", *(s.label for s in lead_series)],
            table_rows=[[f"{day:%Y-%m-%d}", *(str(s.values[i]) for s in lead_series)] for i, day in enumerate(days)],
        )
    )

    lag_rows = [(row, row.lag_minutes) for row in data.sync_lag if row.lag_minutes is not None]
    blocks.append(
        ChartBlock(
            chart_id="chart-sync-lag",
            heading="Sync lag per account",
            svg=svg.hbar_chart(
                chart_id="chart-sync-lag",
                title="Time since each account's last successful sync",
                desc="Bars are minutes since the last sync; the tick marks the account's sync interval.",
                rows=[
                    svg.HBar(
                        label=row.account.name,
                        value=lag,
                        value_label=_lag_text(lag) + (" · syncing now" if row.account.sync_is_active else ""),
                        reference=row.account.sync_interval_minutes,
                    )
                    for row, lag in lag_rows
                ],
                x_label="Minutes since the last sync",
                reference_label="sync interval",
            ),
            table_headers=["Account", "Last synced", "Lag", "Interval", "Latest run"],
            table_rows=[
                [
                    row.account.name,
                    row.account.last_synced_at.strftime("%Y-%m-%d %H:%M UTC")
                    if row.account.last_synced_at
                    else "never",
                    "—" if row.lag_minutes is None else _lag_text(row.lag_minutes),
                    f"{row.account.sync_interval_minutes} min",
                    " · ".join(filter(None, [row.account.latest_run_status or "—", row.account.latest_run_progress])),
                ]
                for row in data.sync_lag
            ],
        )
    )
    return blocks


def _success_rate(outcomes: dict[str, list[int]], index: int) -> str:
    finished = sum(counts[index] for counts in outcomes.values())
    if not finished:
        return "—"
    return f"{100 * outcomes.get(Conversion.Status.UPLOADED, [0] * (index + 1))[index] / finished:.0f}%"
