"""GET /api/v1/campaigns/?page_size=100 with 10,000 campaigns × 90 days (900,000 metric rows).

The bench user holds the viewer role on each account (per-account grants), so every request
pays the access scoping. Measured under gunicorn (2 workers, the platform's gunicorn.conf.py)
with 16 keep-alive clients, uncached (every request a cache miss) and cached. Beside it:

- the HTTP floor: ``bench/floor_app.py`` served by the same gunicorn settings and loaded by the
  same generator, in alternating rounds (JWT check, one SQL query for the scoped page with its
  window totals, orjson);
- an open loop at a fixed arrival rate against both, for the tail a closed loop hides;
- the in-process floor (the same SQL from 16 threads in one process, no HTTP), labelled so;
- scale-out: the uncached list with 1, 2 and 4 gunicorn workers;
- the COPY rate of seeding the metrics (the floor of bulk writes).

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
    FLOOR_APP,
    LoadResult,
    alternate,
    bench_database_url,
    django_setup,
    emit,
    ensure_database,
    gunicorn,
    http_load,
    open_loop_load,
)
from bench.floor_app import CAMPAIGN_PAGE_SQL


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
            "budget_external_id, budget_is_shared, budget_level, synced_at, created_at, updated_at) FROM STDIN"
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
                        "campaign",
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


def in_process_floor_load(conninfo: str, user_id: int, total: int, concurrency: int) -> LoadResult:
    """The floor's SQL and encoding from threads of this process: what no HTTP at all costs."""
    import orjson
    import psycopg

    today = dt.date.today()
    params = {"user_id": user_id, "limit": 100, "since": today - dt.timedelta(days=29), "until": today}
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
                rows = conn.execute(CAMPAIGN_PAGE_SQL, params).fetchall()
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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, platform and floor")
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    secret = "bench-" + uuid.uuid4().hex * 2
    # Tokens outlive the run (the default 15 minutes would not).
    django_setup(url, REDIS_URL=redis_url, SECRET_KEY=secret, JWT_ACCESS_MINUTES="240")
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from campaigns.models import AccountAccess, AccountRole, AdAccount

    call_command("migrate", verbosity=0)
    conninfo = url
    seeded = seed(conninfo, args.campaigns, args.days)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    for account in AdAccount.objects.all():
        AccountAccess.objects.get_or_create(user=user, account=account, defaults={"role": AccountRole.VIEWER})
    token = str(RefreshToken.for_user(user).access_token)
    cache.clear()
    headers = {"Authorization": f"Bearer {token}"}
    per_round = args.requests // 2

    def uncached(port: int, total: int = per_round, concurrency: int = args.concurrency) -> LoadResult:
        return http_load(
            port,
            lambda i: ("GET", f"/api/v1/campaigns/?page_size=100&nocache={uuid.uuid4().hex}{i}", None, headers),
            total=total,
            concurrency=concurrency,
        )

    def floor(port: int) -> LoadResult:
        return http_load(
            port,
            lambda i: ("GET", "/floor/campaigns?page_size=100", None, headers),
            total=per_round,
            concurrency=args.concurrency,
        )

    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "SECRET_KEY": secret, "JWT_ACCESS_MINUTES": "240"}
    with gunicorn(env, workers=2) as port, gunicorn(env, workers=2, app=FLOOR_APP) as floor_port:
        uncached(port, total=100, concurrency=4)
        floor(floor_port)
        closed = alternate(args.rounds, {"platform": lambda: uncached(port), "floor": lambda: floor(floor_port)})
        # Open loop at what the platform sustains at a 60% load, the same rate at both.
        rate = max(10.0, 0.6 * closed["platform"]["rps"])
        open_loop = alternate(
            args.rounds,
            {
                "platform": lambda: open_loop_load(
                    port,
                    lambda i: ("GET", f"/api/v1/campaigns/?page_size=100&open={uuid.uuid4().hex}{i}", None, headers),
                    rate=rate,
                    total=int(rate * 5),
                ),
                "floor": lambda: open_loop_load(
                    floor_port,
                    lambda i: ("GET", "/floor/campaigns?page_size=100", None, headers),
                    rate=rate,
                    total=int(rate * 5),
                ),
            },
        )
        cached = http_load(
            port,
            lambda i: ("GET", "/api/v1/campaigns/?page_size=100", None, headers),
            total=args.requests,
            concurrency=args.concurrency,
        )
    scale_out = {}
    for workers in (1, 2, 4):
        with gunicorn(env, workers=workers) as scaled_port:
            uncached(scaled_port, total=50, concurrency=4)
            scale_out[workers] = uncached(scaled_port).summary()
    in_process = in_process_floor_load(conninfo, user.pk, per_round, args.concurrency)
    for name, summary in {**closed, **{f"open {k}": v for k, v in open_loop.items()}}.items():
        print(f"{name:16}", summary)
    print("cached          ", cached.summary())
    print("in-process floor", in_process.summary())
    for workers, summary in scale_out.items():
        print(f"{workers} gunicorn workers", summary)
    print("seed            ", seeded)
    platform, http_floor = closed["platform"], closed["floor"]
    figures = [
        {
            "figure": f"campaign list uncached req/s ({args.concurrency} clients, median of {args.rounds} rounds)",
            "value": platform["rps"],
            "floor": http_floor["rps"],
            "floor_name": "HTTP floor req/s",
            "target": "≥ 0.5× floor",
        },
        {
            "figure": "campaign list uncached p50 (ms)",
            "value": platform["p50_ms"],
            "floor": http_floor["p50_ms"],
            "floor_name": "HTTP floor p50",
            "target": "",
        },
        {
            "figure": "campaign list uncached p99 (ms)",
            "value": platform["p99_ms"],
            "floor": http_floor["p99_ms"],
            "floor_name": "HTTP floor p99",
            "target": "",
        },
        {
            "figure": f"campaign list open loop {rate:,.0f} req/s: p50 (ms)",
            "value": open_loop["platform"]["p50_ms"],
            "floor": open_loop["floor"]["p50_ms"],
            "floor_name": "HTTP floor, same rate",
            "target": "",
        },
        {
            "figure": f"campaign list open loop {rate:,.0f} req/s: p99 (ms)",
            "value": open_loop["platform"]["p99_ms"],
            "floor": open_loop["floor"]["p99_ms"],
            "floor_name": "HTTP floor, same rate",
            "target": "",
        },
        {
            "figure": "campaign list uncached req/s, in-process floor",
            "value": platform["rps"],
            "floor": in_process.rps,
            "floor_name": "same SQL + orjson from threads, no HTTP",
            "target": "",
        },
        {"figure": "campaign list cached req/s", "value": cached.rps, "target": "≥ 500"},
        {"figure": "campaign list cached p50 (ms)", "value": cached.percentile(50), "target": ""},
        {"figure": "campaign list cached p99 (ms)", "value": cached.percentile(99), "target": ""},
    ]
    for workers, summary in scale_out.items():
        figures.append(
            {
                "figure": f"campaign list uncached req/s, {workers} gunicorn worker{'s' if workers > 1 else ''}",
                "value": summary["rps"],
                "floor": scale_out[1]["rps"] if workers > 1 else None,
                "floor_name": "1 worker",
                "target": "",
            }
        )
    figures.append({"figure": "COPY metric rows/s (seed)", "value": seeded["copy_rows_per_s"], "target": ""})
    emit("campaign_api", figures)


if __name__ == "__main__":
    main()
