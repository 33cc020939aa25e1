"""Scale-out of the sync: the same 20-account sync with 1, 2 and 4 Celery worker processes.

The Google emulator runs in its own process (``bench/sandbox_process.py``: 20 client accounts,
500 campaigns each, 30 days, no ad groups). For each worker count the metrics are emptied, the
workers started (``celery worker --pool solo``, one task at a time each, Redis as the broker),
and one sync run queued per account, its message published twice (as a broker redelivers).
Reported: rows written per second from the first run queued to the last one finished, and
whether the leases held: each run synced once (one attempt), no two syncs of one account
overlapped in time, and every account's rows are all stored.

    .venv/bin/python bench/bench_scale_out.py [--clients 20] [--campaigns 500] [--days 30]

The machine's cores are shared by the workers, PostgreSQL and the emulator: on a 2-core box
the curve flattens where the cores run out, which is what the figure is for.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, django_setup, emit, ensure_database

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/scale_bench"


def start_workers(count: int, env: dict[str, str], log_dir: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(count):
        log = open(log_dir / f"worker-{n}.log", "w")  # noqa: SIM115 - closed with the process
        workers.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "adsplatform",
                    "worker",
                    "--pool",
                    "solo",
                    "--hostname",
                    f"bench{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=5)


def overlapping_syncs(runs) -> int:
    """Pairs of runs of one account whose [started, finished] intervals overlap."""
    by_account: dict[int, list] = {}
    for run in runs:
        if run.started_at and run.finished_at:
            by_account.setdefault(run.account_id, []).append((run.started_at, run.finished_at))
    overlaps = 0
    for intervals in by_account.values():
        intervals.sort()
        for (_, first_end), (second_start, _) in itertools.pairwise(intervals):
            overlaps += second_start < first_end
    return overlaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--campaigns", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    url = os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(url)
    redis_url = os.environ.get("BENCH_SCALE_REDIS_URL", "redis://127.0.0.1:6379/8")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    sandbox = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "sandbox_process.py"),
            "--cert-dir",
            str(work_dir / "sandbox"),
            "--clients",
            str(args.clients),
            "--campaigns",
            str(args.campaigns),
            "--days",
            str(args.days),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    results = {}
    try:
        ports = json.loads(sandbox.stdout.readline())
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "adsplatform.settings",
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "VAR_DIR": str(work_dir / "var"),
            "ADS_SANDBOX": "1",
            "ADS_SANDBOX_HOST": "127.0.0.1",
            "ADS_SANDBOX_GOOGLE_PORT": str(ports["grpc_port"]),
            "ADS_SANDBOX_OAUTH_PORT": str(ports["oauth_port"]),
            "ADS_SANDBOX_DIR": str(work_dir / "sandbox"),
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ports["ca_path"],
            "LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(work_dir / "prometheus"),
        }
        (work_dir / "prometheus").mkdir()
        os.environ.update(env)
        django_setup(url)
        import redis
        from django.core.management import call_command
        from django.db import connection, transaction

        from adsplatform.celery import app
        from campaigns import enqueue, services
        from campaigns.models import AdAccount, DailyMetric, SyncRun

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE campaigns_dailymetric, campaigns_adgroupdailymetric, optimization_optimizationrun, "
                "campaigns_syncrun, campaigns_adgroup, campaigns_campaign, campaigns_adaccount RESTART IDENTITY CASCADE"
            )
        services.account_discover(platforms=["google"])
        accounts = list(AdAccount.objects.filter(is_active=True))
        for count in [int(n) for n in args.workers.split(",")]:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE campaigns_dailymetric, campaigns_syncrun CASCADE")
            AdAccount.objects.update(sync_lease_run_id=None, sync_lease_taken_at=None, last_synced_at=None)
            redis.Redis.from_url(redis_url).flushdb()
            workers = start_workers(count, env, work_dir)
            try:
                deadline = time.monotonic() + 60
                while len(app.control.ping(timeout=1.0) or []) < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{count} workers did not answer: see {work_dir}")
                started = time.perf_counter()
                runs = []
                with transaction.atomic():  # every account's run goes out together, at commit
                    for account in accounts:
                        since = services.account_today(account) - datetime.timedelta(days=args.days - 1)
                        runs.append(
                            services.sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL, since=since)
                        )
                # Every message a second time, as a broker redelivers one: the lease must keep
                # each account to one sync at a time, and each run to one sync.
                for run in runs:
                    enqueue.sync_account(run.pk)
                busy = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
                while SyncRun.objects.filter(status__in=busy).exists():
                    if time.perf_counter() - started > args.timeout:
                        raise RuntimeError(f"syncs still running after {args.timeout} s: see {work_dir}")
                    time.sleep(0.2)
                elapsed = time.perf_counter() - started
            finally:
                stop_workers(workers)
            runs = list(SyncRun.objects.all())
            succeeded = [r for r in runs if r.status == SyncRun.Status.SUCCEEDED]
            synced_rows = {r.account_id: r.metric_rows_synced for r in succeeded}
            rows = sum(r.metric_rows_synced for r in succeeded)
            results[count] = {
                "seconds": round(elapsed, 2),
                "rows": rows,
                "rows_per_s": round(rows / elapsed, 1),
                "succeeded": len(succeeded),
                "skipped": sum(r.status == SyncRun.Status.SKIPPED for r in runs),
                "failed": sum(r.status == SyncRun.Status.FAILED for r in runs),
                "overlapping": overlapping_syncs(succeeded),
                "attempts": sum(r.attempts for r in runs),
                # Every row its sync read is stored, once (the unique constraint forbids twice).
                "accounts_complete": sum(
                    0 < synced_rows.get(account.pk, 0) == DailyMetric.objects.filter(campaign__account=account).count()
                    for account in accounts
                ),
            }
            print(f"{count} worker(s):", results[count], flush=True)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(timeout=20)

    figures = []
    for count, result in results.items():
        figures.append(
            {
                "figure": f"sync of {args.clients} accounts, {count} worker process(es): rows/s",
                "value": result["rows_per_s"],
                "floor": results[min(results)]["rows_per_s"] if count != min(results) else None,
                "floor_name": f"{min(results)} worker",
                "target": "",
            }
        )
        figures.append(
            {
                "figure": f"  {count} worker(s): sync attempts / overlapping syncs / accounts with all rows",
                "value": f"{result['attempts']} / {result['overlapping']} / {result['accounts_complete']}",
                "target": f"{args.clients} / 0 / {args.clients}",
            }
        )
    print(json.dumps({"results": results}))
    emit("scale_out", figures)


if __name__ == "__main__":
    main()
