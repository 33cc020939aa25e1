"""A full sync of 10,000 Google campaigns × 5 ad groups × 30 days from the sandbox into PostgreSQL.

The sandbox runs in its own process (``bench/sandbox_process.py``), so the
figures are the syncing process's own: total time, metric rows (campaign and ad group level)
written per second, and peak memory. Beside the write rate: COPY of the same rows into a
table of the same shape (the floor) and into a bare one. Then, each in a process of its own:
the peak memory of ~100,000 against ~1,000,000 rows, and one sync of 100,000 campaigns.

    .venv/bin/python bench/bench_sync.py [--campaigns 10000] [--days 30] [--large-campaigns 100000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_database_url, django_setup, emit, ensure_database, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--memory-campaigns",
        type=int,
        default=1_000,
        help="campaigns of the peak-memory comparison (100,000 and 1,000,000 rows, by the days synced)",
    )
    parser.add_argument("--ad-groups", type=int, default=5, help="ad groups per campaign")
    parser.add_argument(
        "--large-campaigns", type=int, default=100_000, help="campaigns of the one large sync (no ad groups); 0: skip"
    )
    parser.add_argument("--sync-only", action="store_true", help="one first sync; print its rows and peak RSS")
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    sandbox_dir = tempfile.mkdtemp(prefix="ads-sandbox-")
    # One client account of the size asked, in a process of its own (bench/sandbox_process.py).
    sandbox = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "sandbox_process.py"),
            "--cert-dir",
            sandbox_dir,
            "--clients",
            "1",
            "--campaigns",
            str(args.campaigns),
            "--ad-groups",
            str(args.ad_groups),
            "--days",
            str(args.days),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        started_sandbox = json.loads(sandbox.stdout.readline())
        ports = {
            "ADS_SANDBOX_GOOGLE_PORT": str(started_sandbox["grpc_port"]),
            "ADS_SANDBOX_OAUTH_PORT": str(started_sandbox["oauth_port"]),
        }
        django_setup(url, ADS_SANDBOX="1", ADS_SANDBOX_HOST="127.0.0.1", ADS_SANDBOX_DIR=sandbox_dir, **ports)
        from django.core.management import call_command
        from django.db import connection, transaction

        from campaigns import services, upserts
        from campaigns.models import AdAccount, AdGroup, AdGroupDailyMetric, Campaign, DailyMetric
        from platforms.registry import get_platform

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE campaigns_dailymetric, campaigns_adgroupdailymetric, optimization_optimizationrun, "
                "campaigns_syncrun, campaigns_adgroup, campaigns_campaign, campaigns_adaccount RESTART IDENTITY CASCADE"
            )
        accounts = services.account_discover(platforms=["google"])
        account = max(accounts, key=lambda a: sum(1 for _ in get_platform("google").list_campaigns(a)))
        # The window the benchmark names: `days` days back from the account's today.
        since = services.account_today(account) - datetime.timedelta(days=args.days - 1)
        run = services.sync_run_create(account=account, enqueue=False, since=since)
        started = time.perf_counter()
        services.campaign_sync(run=run)
        total = time.perf_counter() - started
        rows = run.metric_rows_synced + run.ad_group_metric_rows_synced
        if args.sync_only:
            print(json.dumps({"rows": rows, "seconds": total, "peak_rss_mb": peak_rss_mb()}))
            return
        campaigns = Campaign.objects.filter(account=account).count()
        ad_groups = AdGroup.objects.filter(account=account).count()

        # The second sync of the same window: every row is an update.
        rerun = services.sync_run_create(account=account, enqueue=False, since=since)
        started = time.perf_counter()
        services.campaign_sync(run=rerun)
        update_total = time.perf_counter() - started

        sync_rss = peak_rss_mb()

        # The database write alone: the same rows, already in memory, written fresh.
        adapter = get_platform("google")
        campaign_rows = list(adapter.iter_daily_metrics(account, since, rerun.date_to))
        ad_group_rows = list(adapter.iter_ad_group_daily_metrics(account, since, rerun.date_to))
        DailyMetric.objects.filter(campaign__account=account).delete()
        AdGroupDailyMetric.objects.filter(ad_group__account=account).delete()
        started = time.perf_counter()
        upserts.metric_upsert(account=account, rows=campaign_rows)
        upserts.ad_group_metric_upsert(account=account, rows=ad_group_rows)
        write_seconds = time.perf_counter() - started
        del campaign_rows, ad_group_rows

        # Floors: COPY the same rows (read back from the tables) into scratch tables. The floor is a
        # table of the metric table's own shape (indexes, unique constraint, foreign key): the same
        # work as the sync's write, done the plainest way. Beside it, labelled, a bare temporary
        # table (no index, no WAL): what COPY alone costs.
        columns = (
            "date",
            "impressions",
            "clicks",
            "cost_micros",
            "conversions",
            "conversion_value_micros",
            "updated_at",
        )
        values = list(DailyMetric.objects.filter(campaign__account=account).values_list("campaign_id", *columns))
        values += AdGroupDailyMetric.objects.filter(ad_group__account=account).values_list("ad_group_id", *columns)
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TABLE IF EXISTS bench_copy_floor; "
                "CREATE TABLE bench_copy_floor (LIKE campaigns_dailymetric INCLUDING ALL); "
                # The campaign and ad-group rows share one table here, so the key names either.
                "CREATE TEMP TABLE bench_floor_owners AS SELECT id FROM campaigns_campaign WHERE account_id = %s "
                "UNION ALL SELECT id FROM campaigns_adgroup WHERE account_id = %s",
                [account.pk, account.pk],
            )
            cursor.execute(
                "CREATE TABLE bench_floor_owner (id uuid PRIMARY KEY); "
                "INSERT INTO bench_floor_owner SELECT id FROM bench_floor_owners; "
                "ALTER TABLE bench_copy_floor ADD FOREIGN KEY (campaign_id) REFERENCES bench_floor_owner (id) "
                "DEFERRABLE INITIALLY DEFERRED; "
                "CREATE TEMP TABLE bench_copy_bare AS SELECT campaign_id, date, impressions, clicks, cost_micros, "
                "conversions, conversion_value_micros, updated_at FROM campaigns_dailymetric WITH NO DATA"
            )
        copy_seconds = {}
        for table in ("bench_copy_floor", "bench_copy_bare"):
            started = time.perf_counter()
            with (
                transaction.atomic(),
                connection.cursor() as cursor,
                cursor.cursor.copy(
                    f"COPY {table} (campaign_id, date, impressions, clicks, cost_micros, conversions, "
                    "conversion_value_micros, updated_at) FROM STDIN"
                ) as copy,
            ):
                for row in values:
                    copy.write_row(row)
            copy_seconds[table] = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_copy_floor, bench_floor_owner")
        AdAccount.objects.filter(pk=account.pk).update(last_synced_at=None)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(timeout=20)

    def child_sync(campaigns: int, days: int, ad_groups: int) -> dict:
        """One first sync in a process of its own (its own peak memory), against its own sandbox."""
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--campaigns",
                str(campaigns),
                "--days",
                str(days),
                "--ad-groups",
                str(ad_groups),
                "--sync-only",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": url},
        )
        return json.loads(child.stdout.strip().splitlines()[-1])

    # Peak memory against the rows synced: the same campaigns over ~100,000 and ~1,000,000 rows
    # (a campaign and its five ad groups are six rows a day), by the number of days.
    peaks = {}
    for target_rows in (100_000, 1_000_000):
        days = max(1, round(target_rows / (args.memory_campaigns * (1 + args.ad_groups))))
        peaks[target_rows] = child_sync(args.memory_campaigns, days, args.ad_groups)
        print(f"{peaks[target_rows]['rows']:,} rows synced: peak RSS {peaks[target_rows]['peak_rss_mb']:.0f} MB")
    large = child_sync(args.large_campaigns, args.days, 0) if args.large_campaigns else None
    if large:
        print(
            f"{args.large_campaigns:,} campaigns x {args.days} days: {large['rows']:,} rows in {large['seconds']:.1f} s"
        )
    print(
        f"campaigns={campaigns} ad_groups={ad_groups} rows={rows} first sync {total:.1f}s, re-sync {update_total:.1f}s, "
        f"upsert alone {write_seconds:.2f}s, COPY into the same shape {copy_seconds['bench_copy_floor']:.2f}s, "
        f"into a bare table {copy_seconds['bench_copy_bare']:.2f}s, sync peak RSS {sync_rss:.0f} MB"
    )
    emit(
        "sync",
        [
            {
                "figure": f"full sync {campaigns:,} campaigns + {ad_groups:,} ad groups × {args.days} days (s)",
                "value": total,
                "target": "< 60",
            },
            {
                "figure": "metric upsert rows/s (database write)",
                "value": rows / write_seconds,
                "floor": len(values) / copy_seconds["bench_copy_floor"],
                "floor_name": "COPY rows/s, a table of the same indexes and key",
                "target": "≥ 0.5× floor",
            },
            {
                "figure": "metric upsert rows/s against a bare COPY",
                "value": rows / write_seconds,
                "floor": len(values) / copy_seconds["bench_copy_bare"],
                "floor_name": "COPY rows/s, temporary table without indexes",
                "target": "",
            },
            {"figure": "sync rows/s end to end (stream + write)", "value": rows / total, "target": ""},
            {"figure": "re-sync of an unchanged window (s)", "value": update_total, "target": ""},
            {"figure": "sync process peak RSS (MB)", "value": sync_rss, "target": "flat"},
            *(
                [
                    {
                        "figure": f"one sync of {args.large_campaigns:,} campaigns × {args.days} days, "
                        f"{large['rows']:,} rows (s)",
                        "value": large["seconds"],
                        "target": "",
                    },
                    {"figure": "  its peak RSS (MB)", "value": large["peak_rss_mb"], "target": ""},
                ]
                if large
                else []
            ),
            {
                "figure": f"sync peak RSS (MB), {peaks[1_000_000]['rows']:,} rows",
                "value": peaks[1_000_000]["peak_rss_mb"],
                "floor": peaks[100_000]["peak_rss_mb"],
                "floor_name": f"{peaks[100_000]['rows']:,} rows",
                "target": "≤ 1.10×",
            },
        ],
    )


if __name__ == "__main__":
    main()
