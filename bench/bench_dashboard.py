"""The admin index (the operator dashboard) with 10,000 campaigns × 90 days of metrics.

Seeds with the campaign API benchmark's COPY seed, adds a ledger of conversions and leads over
the same 90 days, then renders GET /admin/ in-process (Django's test client, a logged-in
superuser: middleware, the dashboard's queries, SVG and template) ~20 times per filter and
reports the p50 server time and the SQL queries of one render, twice: warm (the metrics and
outcome aggregates in the cache, as between two syncs) and cold (cache emptied before every
render, as on the first render after a sync). The cache is Redis (BENCH_REDIS_URL) as in production.

    .venv/bin/python bench/bench_dashboard.py [--campaigns 10000] [--days 90] [--renders 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_campaign_api import seed
from bench.common import bench_database_url, django_setup, emit, ensure_database

STATUSES = "ARRAY['uploaded','uploaded','uploaded','uploaded','rejected','failed','expired','pending']"
PRIORITIES = "ARRAY['urgent','high','normal','normal','low']"


def seed_operations(conninfo: str, *, days: int, conversions_per_day: int, leads_per_day: int) -> dict:
    """Conversions and leads spread over ``days`` (the campaign seed's TRUNCATE … CASCADE emptied
    them), one account's monthly cap, and one running sync."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO conversions_conversionaction (account_id, external_id, name, is_active, created_at, "
            "updated_at) SELECT id, '900' || id, 'Bench purchase', true, now(), now() FROM campaigns_adaccount"
        )
        conn.execute(
            f"""
            INSERT INTO conversions_conversion (platform, dedupe_key, order_id, event_name, event_id, click_id_type,
                hashed_email, hashed_phone, value_micros, currency_code, occurred_at, payload, status, attempts,
                last_error, platform_code, platform_message, request_id, source, created_at, updated_at,
                account_id, action_id)
            SELECT a.platform, 'bench-' || g, 'order-' || g, '', '', '', '', '', 50000000, a.currency_code,
                   t.at, '{{}}', ({STATUSES})[1 + g %% 8], 1, '', '', '', '', 'bench', t.at, t.at, a.id, ca.id
            FROM generate_series(1, %s) AS g
            CROSS JOIN LATERAL (SELECT now() - (g %% %s) * interval '1 day' - (g %% 1440) * interval '1 minute' AS at) t
            JOIN campaigns_adaccount a ON a.id = (SELECT min(id) FROM campaigns_adaccount) + g %% 2
            JOIN conversions_conversionaction ca ON ca.account_id = a.id
            """,
            (days * conversions_per_day, days),
        )
        source_id = conn.execute(
            "INSERT INTO webhooks_webhooksource (name, kind, secret, previous_secret, is_active, created_at, "
            "updated_at) VALUES ('bench', 'relay', 'bench-secret', '', true, now(), now()) "
            "ON CONFLICT (name) DO UPDATE SET updated_at = now() RETURNING id"
        ).fetchone()[0]
        conn.execute(
            f"""
            INSERT INTO webhooks_lead (external_lead_id, full_name, email, phone, phone_raw, gclid, gbraid, wbraid,
                custom_answers, is_test, received_at, priority, stage, created_at, updated_at, campaign_id, source_id)
            SELECT '', 'Bench lead', '', '', '', '', '', '', '{{}}', false,
                   now() - (g %% %s) * interval '1 day', ({PRIORITIES})[1 + g %% 5], 'new', now(), now(), c.id, %s
            FROM generate_series(1, %s) AS g
            LEFT JOIN LATERAL (SELECT id FROM campaigns_campaign ORDER BY name OFFSET g %% 100 LIMIT 1) c ON true
            """,
            (days, source_id, days * leads_per_day),
        )
        conn.execute(
            "INSERT INTO optimization_accountbudgetsettings (account_id, monthly_budget_micros, optimizer_enabled, "
            "auto_apply, updated_at) SELECT min(id), 1000000000000, true, false, now() FROM campaigns_adaccount"
        )
        conn.execute(
            "INSERT INTO campaigns_syncrun (account_id, trigger, status, created_at, started_at, finished_at, "
            "campaigns_synced, ad_groups_synced, metric_rows_synced, ad_group_metric_rows_synced, progress, attempts, "
            "error_class, error_message) SELECT id, 'scheduled', 'succeeded', now() - interval '5 minutes', "
            "now() - interval '5 minutes', now() - interval '4 minutes', 5000, 0, 450000, 0, '', 1, '', '' "
            "FROM campaigns_adaccount"
        )
        conn.execute("ANALYZE")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("campaigns_campaign", "campaigns_dailymetric", "conversions_conversion", "webhooks_lead")
        }
    return counts


def time_renders(client, path: str, renders: int, *, cold: bool) -> tuple[list[float], int]:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):  # template loading, first connection
        assert client.get(path).status_code == 200
    timings, queries = [], 0
    for _ in range(renders):
        if cold:
            cache.clear()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
        assert response.status_code == 200 and b"chart-pacing" in response.content
    return timings, queries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--conversions-per-day", type=int, default=1_000)
    parser.add_argument("--leads-per-day", type=int, default=200)
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    django_setup(
        url, REDIS_URL=redis_url, SECRET_KEY="bench-" + uuid.uuid4().hex * 2, ALLOWED_HOSTS="testserver,localhost"
    )
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings

    call_command("migrate", verbosity=0)
    seeded = seed(url, args.campaigns, args.days)
    counts = seed_operations(
        url, days=args.days, conversions_per_day=args.conversions_per_day, leads_per_day=args.leads_per_day
    )
    user, _ = get_user_model().objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)

    today = dt.date.today()
    filters = {
        "default (30 days)": "/admin/",
        "90 days": f"/admin/?date_from={today - dt.timedelta(days=89):%Y-%m-%d}&date_to={today:%Y-%m-%d}",
    }
    # Admin pages link static files; the benchmark has not run collectstatic.
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    results = {}
    with override_settings(STORAGES=storages):
        for name, path in filters.items():
            for cold in (False, True):
                label = f"{name}, {'cold' if cold else 'warm'}"
                timings, queries = time_renders(client, path, args.renders, cold=cold)
                results[label] = (statistics.median(timings), max(timings), queries)
                p50, worst, _ = results[label]
                print(f"{label:26} p50 {p50:7.1f} ms  max {worst:7.1f} ms  {queries} queries")
    print("rows", counts, "metric COPY", seeded)
    figures = []
    for label, (p50, worst, queries) in results.items():
        figures.append({"figure": f"admin dashboard {label} p50 (ms)", "value": p50, "target": "< 200"})
        figures.append({"figure": f"admin dashboard {label} max (ms)", "value": worst, "target": ""})
        figures.append({"figure": f"admin dashboard {label} SQL queries", "value": queries, "target": "fixed"})
    emit("dashboard", figures)


if __name__ == "__main__":
    main()
