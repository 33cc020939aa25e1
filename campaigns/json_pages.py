"""The campaign list's page as JSON, built by PostgreSQL in the one query that reads it.

Reading the rows into Python, turning them into dicts and encoding those again cost a list
request more than the database did (``make bench``: the page's Python was half of an uncached
request's CPU). Here PostgreSQL writes the ``results`` array itself, row by row in the
shape ``campaigns.api.campaign_row`` gives, and the view splices it into the page's envelope.
The page's ids are still chosen by the ORM (``selectors.campaign_page_ids``: the filters, the
access scope and the ordering are written once); this only reads the rows around them.

The derived metrics are computed with the same exact integer rounding as
``selectors.derived_metrics``, and ``tests/campaigns/test_json_pages.py`` holds the two ways of
writing a page equal. Other databases (the embedded SQLite default) take the Python way.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections

from adsplatform.db import prepared_cursor
from campaigns import selectors

# A timestamp the way the Python answers write it (orjson's OPT_UTC_Z): UTC, "Z", and the
# microseconds only when there are any.
_UTC_TIME = """(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN extract(microseconds FROM {column})::bigint %% 1000000 = 0 THEN ''
            ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || 'Z')"""


def _half_up(numerator: str, denominator: str, places: int) -> str:
    """numerator / denominator rounded half up to ``places`` decimals, as selectors._half_up."""
    scale = 10**places
    return (
        f"(div(2 * {numerator}::numeric * {scale} + {denominator}, 2 * NULLIF({denominator}, 0)::numeric)"
        f" / {scale})::float8"
    )


_METRICS = f"""CASE WHEN span.data_from IS NULL THEN json_build_object(
        'impressions', NULL, 'clicks', NULL, 'cost_micros', NULL, 'conversions', NULL,
        'conversion_value_micros', NULL, 'ctr', NULL, 'cpc_micros', NULL, 'cpa_micros', NULL, 'roas', NULL)
    ELSE json_build_object(
        'impressions', totals.impressions,
        'clicks', totals.clicks,
        'cost_micros', totals.cost_micros,
        'conversions', totals.conversions::float8,
        'conversion_value_micros', totals.conversion_value_micros,
        'ctr', {_half_up("totals.clicks", "totals.impressions", 6)},
        'cpc_micros', totals.cost_micros / NULLIF(totals.clicks, 0),
        'cpa_micros', div(totals.cost_micros::numeric, NULLIF(totals.conversions, 0))::bigint,
        'roas', {_half_up("totals.conversion_value_micros", "totals.cost_micros", 4)})
    END"""

# {page_ids}: the ORM's query of the page's ids, in order. Two parameters before it (the window).
# Only constants and the ORM's compiled SQL are interpolated; every value is a parameter.
_PAGE_SQL = f"""
WITH span_of_window AS (SELECT %s::date AS date_from, %s::date AS date_to)
SELECT COALESCE(json_agg(page.row ORDER BY page.position), '[]')::text
FROM (
    SELECT chosen.position, json_build_object(
        'id', campaign.id,
        'platform', campaign.platform,
        'external_id', campaign.external_id,
        'name', campaign.name,
        'status', campaign.status,
        'daily_budget_micros', campaign.daily_budget_micros,
        'budget_micros', campaign.budget_micros,
        'currency_code', account.currency_code,
        'account', json_build_object('id', account.id, 'name', account.name, 'platform', account.platform),
        'synced_at', {_UTC_TIME.format(column="campaign.synced_at")},
        'metrics', {_METRICS},
        'date_from', window_.date_from,
        'date_to', window_.date_to,
        'data_from', span.data_from
    ) AS row
    FROM unnest(ARRAY({{page_ids}})) WITH ORDINALITY AS chosen(id, position)
    JOIN campaigns_campaign campaign ON campaign.id = chosen.id
    JOIN campaigns_adaccount account ON account.id = campaign.account_id
    CROSS JOIN span_of_window window_
    -- coverage.window_data_from: the first day of the window with synced data, if any.
    CROSS JOIN LATERAL (
        SELECT CASE WHEN account.data_from IS NULL OR account.data_from > window_.date_to THEN NULL
                    ELSE GREATEST(account.data_from, window_.date_from) END AS data_from
    ) span
    CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(day.impressions), 0)::bigint AS impressions,
               COALESCE(SUM(day.clicks), 0)::bigint AS clicks,
               COALESCE(SUM(day.cost_micros), 0)::bigint AS cost_micros,
               COALESCE(SUM(day.conversions), 0) AS conversions,
               COALESCE(SUM(day.conversion_value_micros), 0)::bigint AS conversion_value_micros
        FROM campaigns_dailymetric day
        WHERE day.campaign_id = campaign.id AND day.date BETWEEN window_.date_from AND window_.date_to
    ) totals
) page
"""  # noqa: S608


def builds_json(using: str = "default") -> bool:
    """Whether this database writes the page (PostgreSQL); else the Python rows are used."""
    return connections[using].vendor == "postgresql"


def campaign_page_json(*, filters: selectors.CampaignFilters, offset: int, limit: int) -> str:
    """The page's ``results`` array as JSON text, in one query."""
    page_ids = selectors.campaign_page_ids(filters=filters, offset=offset, limit=limit)
    try:
        ids_sql, ids_params = page_ids.query.sql_with_params()
    except EmptyResultSet:  # no account in the caller's scope: the ORM knows without asking
        return "[]"
    params: list[Any] = [filters.date_from, filters.date_to, *ids_params]
    with prepared_cursor(page_ids.db) as cursor:
        cursor.execute(_PAGE_SQL.format(page_ids=ids_sql), params)
        return cursor.fetchone()[0]
