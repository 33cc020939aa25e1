"""GET /api/v1/campaigns/?page_size=100 with 10,000 campaigns × 90 days (900,000 metric rows).

Measured under gunicorn (2 workers) with 16 concurrent clients, uncached (every request a
cache miss) and cached; beside it the floor: the same page fetched with one raw SQL query
through psycopg and encoded with orjson, by 16 concurrent clients. Also reports the COPY
rate of seeding the metrics (the floor of bulk writes).

    .venv/bin/python bench/bench_campaign_api.py [--campaigns 10000] [--days 90] [--requests 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    LoadResult,
    bench_database_url,
    django_setup,
    emit,
    ensure_database,
    gunicorn,
    http_load,
)

FLOOR_SQL = """
SELECT c.id, c.platform, c.external_id, c.name, c.status, c.daily_budget_micros, c.budget_micros, c.synced_at,
       a.id, a.name, a.platform, a.currency_code,
       m.impressions, m.clicks, m.cost_micros, m.conversions, m.conversion_value_micros
FROM (SELECT * FROM campaigns_campaign ORDER BY name, id LIMIT 100) c
JOIN campaigns_adaccount a ON a.id = c.account_id
LEFT JOIN LATERAL (
    SELECT COALESCE(SUM(impressions), 0) AS impressions, COALESCE(SUM(clicks), 0) AS clicks,
           COALESCE(SUM(cost_micros), 0) AS cost_micros, COALESCE(SUM(conversions), 0) AS conversions,
           COALESCE(SUM(conversion_value_micros), 0) AS conversion_value_micros
    FROM campaigns_dailymetric d WHERE d.campaign_id = c.id AND d.date BETWEEN %s AND %s
) m ON true
ORDER BY c.name, c.id
"""


def seed(conninfo: str, campaigns: int, days: int) -> dict:
    """Fresh accounts, campaigns and metrics, written with COPY; returns the COPY rate."""
    import psycopg

    rng = random.Random(7)
    today = dt.date.today()
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "TRUNCATE campaigns_dailymetric, optimization_optimizationrun, campaigns_syncrun, campaigns_campaign, "
            "campaigns_adaccount RESTART IDENTITY CASCADE"
        )
        accounts = []
        for platform, external_id, currency, tz in (
            ("google", "1234567890", "USD", "America/New_York"),
            ("meta", "300000000000001", "EUR", "Europe/Berlin"),
        ):
            row = conn.execute(
                "INSERT INTO campaigns_adaccount (platform, external_id, name, currency_code, time_zone, "
                "manager_customer_id, is_active, sync_interval_minutes, needs_attention, attention_reason, "
                "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, '', true, 15, false, '', now(), now()) "
                "RETURNING id",
                (platform, external_id, f"Bench {platform}", currency, tz),
            ).fetchone()
            accounts.append((row[0], platform))
        ids = []
        with conn.cursor().copy(
            "COPY campaigns_campaign (id, account_id, platform, external_id, name, status, daily_budget_micros, "
            "budget_external_id, budget_is_shared, synced_at, created_at, updated_at) FROM STDIN"
        ) as copy:
            now = dt.datetime.now(dt.UTC)
            for n in range(campaigns):
                account_id, platform = accounts[n % 2]
                campaign_id = uuid.uuid4()
                ids.append(campaign_id)
                copy.write_row(
                    (
                        campaign_id,
                        account_id,
                        platform,
                        str(10_000_000 + n),
                        f"Campaign {n:05d}",
                        "enabled",
                        rng.randrange(10, 500) * 1_000_000,
                        "",
                        False,
                        now,
                        now,
                        now,
                    )
                )
        started = time.perf_counter()
        rows = 0
        with conn.cursor().copy(
            "COPY campaigns_dailymetric (campaign_id, date, impressions, clicks, cost_micros, conversions, "
            "conversion_value_micros, updated_at) FROM STDIN"
        ) as copy:
            now = dt.datetime.now(dt.UTC)
            for campaign_id in ids:
                for offset in range(days):
                    clicks = rng.randrange(0, 200)
                    copy.write_row(
                        (
                            campaign_id,
                            today - dt.timedelta(days=offset),
                            clicks * 20,
                            clicks,
                            clicks * 350_000,
                            clicks // 10,
                            clicks * 900_000,
                            now,
                        )
                    )
                    rows += 1
        copy_seconds = time.perf_counter() - started
        # As the syncs that read these days record it: the seeded days are synced data, not "no data".
        conn.execute("UPDATE campaigns_adaccount SET data_from = %s", (today - dt.timedelta(days=days - 1),))
        conn.execute("ANALYZE")
    return {"metric_rows": rows, "copy_seconds": copy_seconds, "copy_rows_per_s": rows / copy_seconds}


def floor_load(conninfo: str, total: int, concurrency: int) -> LoadResult:
    import orjson
    import psycopg

    today = dt.date.today()
    window = (today - dt.timedelta(days=29), today)
    counter = iter(range(total))
    lock = threading.Lock()
    result = LoadResult(requests=0, seconds=0.0)

    def worker() -> None:
        latencies = []
        with psycopg.connect(conninfo) as conn:
            while True:
                with lock:
                    if next(counter, None) is None:
                        break
                started = time.perf_counter()
                rows = conn.execute(FLOOR_SQL, window).fetchall()
                orjson.dumps([list(map(str, row)) for row in rows])
                latencies.append((time.perf_counter() - started) * 1000)
        with lock:
            result.latencies_ms.extend(latencies)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies_ms)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    secret = "bench-" + uuid.uuid4().hex * 2
    django_setup(url, REDIS_URL=redis_url, SECRET_KEY=secret)
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    call_command("migrate", verbosity=0)
    conninfo = url
    seeded = seed(conninfo, args.campaigns, args.days)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token = str(RefreshToken.for_user(user).access_token)
    cache.clear()
    headers = {"Authorization": f"Bearer {token}"}

    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "SECRET_KEY": secret}
    with gunicorn(env, workers=2) as port:
        http_load(
            port,
            lambda i: ("GET", f"/api/v1/campaigns/?page_size=100&warm={i}", None, headers),
            total=50,
            concurrency=4,
        )
        uncached = http_load(
            port,
            lambda i: ("GET", f"/api/v1/campaigns/?page_size=100&nocache={i}", None, headers),
            total=args.requests // 2,
            concurrency=args.concurrency,
        )
        cached = http_load(
            port,
            lambda i: ("GET", "/api/v1/campaigns/?page_size=100", None, headers),
            total=args.requests,
            concurrency=args.concurrency,
        )
    floor = floor_load(conninfo, args.requests // 2, args.concurrency)
    print("uncached", uncached.summary())
    print("cached  ", cached.summary())
    print("floor   ", floor.summary())
    print("seed    ", seeded)
    emit(
        "campaign_api",
        [
            {
                "figure": "campaign list uncached p50 (ms)",
                "value": uncached.percentile(50),
                "floor": floor.percentile(50),
                "floor_name": "raw SQL + orjson p50",
                "target": "≤ 2× floor",
            },
            {
                "figure": "campaign list uncached p99 (ms)",
                "value": uncached.percentile(99),
                "floor": floor.percentile(99),
                "floor_name": "raw SQL + orjson p99",
                "target": "",
            },
            {
                "figure": "campaign list uncached req/s",
                "value": uncached.rps,
                "floor": floor.rps,
                "floor_name": "raw SQL + orjson queries/s",
                "target": "",
            },
            {"figure": "campaign list cached req/s", "value": cached.rps, "target": "≥ 500"},
            {"figure": "campaign list cached p50 (ms)", "value": cached.percentile(50), "target": ""},
            {"figure": "campaign list cached p99 (ms)", "value": cached.percentile(99), "target": ""},
            {"figure": "COPY metric rows/s (seed)", "value": seeded["copy_rows_per_s"], "target": ""},
        ],
    )


if __name__ == "__main__":
    main()
