"""Conversions benchmark: 10,000 Google click conversions, ingested over HTTP, uploaded through the sandbox.

    .venv/bin/python bench/bench_conversions.py     # PostgreSQL database conversions_bench
    DATABASE_URL=postgres://... .venv/bin/python bench/bench_conversions.py   # a database of its own

1. Starts both emulators (ephemeral ports, a temporary CA), the platform under gunicorn and the
   HTTP floor (``bench/floor_app.py``: key check, one INSERT, orjson) under the same settings.
2. Ingest: half the conversions one per request, in alternating rounds with the same number
   posted to the floor, half in batches, each from 16 keep-alive clients with X-Service-Auth
   (``bench.common.http_load``); requests/s and conversions/s for each.
3. Upload: a separate worker process runs the uploader once; Google should see 5 requests of
   2,000. Reports requests, end-to-end time, the worker's peak memory, copies at the sandbox.

The last line of output is one JSON object with every figure. The database named by
DATABASE_URL is emptied of conversions first: give it one of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    FLOOR_APP,
    LoadResult,
    alternate,
    emit,
    ensure_database,
    gunicorn,
    http_load,
    peak_rss_mb,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/conversions_bench"

GOOGLE_ACTION = "880000001"
CLIENTS = 16


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")
    import django

    django.setup()


def conversion(run_id: str, n: int, when: datetime) -> dict:
    return {
        "gclid": f"Cj0KCQ{run_id}{n:06d}",
        "conversion_action": GOOGLE_ACTION,
        "conversion_date_time": (when - timedelta(seconds=n)).isoformat(),
        "conversion_value": "19.99",
        "currency_code": "USD",
        "order_id": f"bench-{run_id}-{n}",
        "user": {"email": f"Bench.User{n}@Gmail.com", "phone": f"+1650555{n % 10000:04d}"},
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
    }


def statuses_other_than(load: LoadResult, accepted: tuple[int, ...]) -> int:
    return sum(count for status, count in load.statuses.items() if status not in accepted)


def worker() -> None:
    """The upload, as a Celery worker would run it; prints its figures as JSON."""
    django_setup()
    from conversions import services

    start = time.perf_counter()
    summary = services.conversions_upload_pending()
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "peak_rss_mib": round(peak_rss_mb(), 1), **summary.as_dict()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversions", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers, platform and floor alike")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of single posts, platform and floor")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    work_dir = Path(tempfile.mkdtemp(prefix="bench-conversions-"))
    from platforms.sandbox import google as google_sandbox
    from platforms.sandbox import meta as meta_sandbox

    google = google_sandbox.start(host="127.0.0.1", cert_dir=work_dir / "sandbox")
    meta = meta_sandbox.start(host="127.0.0.1")
    service_key = "bench-" + uuid.uuid4().hex
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    ensure_database(database_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "adsplatform.settings",
        "VAR_DIR": str(work_dir / "var"),
        "ADS_SANDBOX": "1",
        "ADS_SANDBOX_HOST": "127.0.0.1",
        "ADS_SANDBOX_GOOGLE_PORT": str(google.grpc_port),
        "ADS_SANDBOX_OAUTH_PORT": str(google.oauth_port),
        "ADS_SANDBOX_META_PORT": str(meta.port),
        "ADS_SANDBOX_DIR": str(work_dir / "sandbox"),
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(google.ca_path),
        "SERVICE_API_KEY": service_key,
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / "prometheus"),
    }
    os.environ.update(env)
    (work_dir / "prometheus").mkdir()
    django_setup()
    from django.core.management import call_command
    from django.db import connection

    from conversions import bootstrap
    from conversions.models import Conversion, ConversionAction, IngestRequest

    call_command("migrate", interactive=False, verbosity=0)
    bootstrap.run(stdout=sys.stderr)
    Conversion.objects.all().delete()
    IngestRequest.objects.all().delete()
    action = ConversionAction.objects.get(account__platform="google", external_id=GOOGLE_ACTION)
    floor_env = {
        **env,
        "FLOOR_SERVICE_KEY_SHA256": hashlib.sha256(service_key.encode()).hexdigest(),
        "FLOOR_ACCOUNT_ID": str(action.account_id),
        "FLOOR_ACTION_ID": str(action.pk),
    }
    database = connection.vendor
    connection.close()

    results: dict = {"benchmark": "conversions", "database": database, "conversions": args.conversions}
    headers = {"X-Service-Auth": service_key, "Content-Type": "application/json"}
    with (
        gunicorn(env, args.web_workers) as port,
        gunicorn(floor_env, args.web_workers, app=FLOOR_APP) as floor_port,
    ):
        url = f"http://127.0.0.1:{port}/api/v1/conversions/google"
        run_id = uuid.uuid4().hex[:8]
        now = datetime.now(UTC).replace(microsecond=0)
        bodies = [conversion(run_id, n, now) for n in range(args.conversions)]
        half = args.conversions // 2
        singles, batched = bodies[:half], bodies[half:]
        batches = [{"conversions": batched[i : i + args.batch_size]} for i in range(0, len(batched), args.batch_size)]
        floor_bodies = [conversion(f"floor{run_id}", n, now) for n in range(half)]
        per_round = half // args.rounds
        sent = {"platform": 0, "floor": 0}

        def posts(name: str, target_port: int, path: str, pool: list) -> Callable[[], LoadResult]:
            def one_round() -> LoadResult:
                start, sent[name] = sent[name], sent[name] + per_round
                chunk = pool[start : start + per_round]
                return http_load(
                    target_port,
                    lambda i: ("POST", path, json.dumps(chunk[i]).encode(), headers),
                    total=len(chunk),
                    concurrency=CLIENTS,
                )

            return one_round

        single = alternate(
            args.rounds,
            {
                "platform": posts("platform", port, "/api/v1/conversions/google", singles),
                "floor": posts("floor", floor_port, "/floor/conversions", floor_bodies),
            },
        )
        results["ingest_single"] = single["platform"]
        results["ingest_single_floor"] = single["floor"]
        leftover = singles[sent["platform"] :]  # what the rounds did not divide evenly, untimed
        http_load(
            port,
            lambda i: ("POST", "/api/v1/conversions/google", json.dumps(leftover[i]).encode(), headers),
            total=len(leftover),
            concurrency=CLIENTS,
        )
        # The floor's rows are not the platform's to upload.
        Conversion.objects.filter(source="floor").delete()
        batch_load = http_load(
            port,
            lambda i: ("POST", "/api/v1/conversions/google", json.dumps(batches[i]).encode(), headers),
            total=len(batches),
            concurrency=CLIENTS,
        )
        results["ingest_batch"] = {
            "requests": len(batches),
            "batch_size": args.batch_size,
            "seconds": round(batch_load.seconds, 2),
            "requests_per_s": round(batch_load.rps, 1),
            "conversions_per_s": round(len(batched) / batch_load.seconds, 1),
            "failures": statuses_other_than(batch_load, (200, 201, 202)),
        }
        # A repeat of a batch must create nothing.
        repeat = requests.post(url, json=batches[0], headers={"X-Service-Auth": service_key}, timeout=60)
        results["repeat_status"] = repeat.status_code

        calls_before = sum(1 for c in google.state.calls if c.method == "UploadClickConversions")
        start = time.perf_counter()
        finished = subprocess.run(
            [sys.executable, __file__, "--worker"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        upload_wall = time.perf_counter() - start
        if finished.returncode != 0:
            print(finished.stderr[-3000:], file=sys.stderr)
            raise SystemExit("the upload worker failed")
        upload = json.loads(finished.stdout.strip().splitlines()[-1])
        results["upload"] = {
            "sandbox_requests": sum(1 for c in google.state.calls if c.method == "UploadClickConversions")
            - calls_before,
            "worker_requests": upload["requests"],
            "uploaded": upload.get("uploaded", 0),
            "seconds": round(upload["seconds"], 2),
            "process_seconds": round(upload_wall, 2),
            "peak_worker_rss_mib": upload["peak_rss_mib"],
        }
        results["sandbox_copies"] = sum(
            1 for c in google.state.conversions if c.order_id.startswith(f"bench-{run_id}-")
        )
        results["ledger_uploaded"] = Conversion.objects.filter(status=Conversion.Status.UPLOADED).count()
    google.stop()
    meta.stop()
    print(json.dumps(results))
    emit(
        "conversions",
        [
            {
                "figure": f"conversion ingest, single posts req/s (16 clients, median of {args.rounds} rounds)",
                "value": results["ingest_single"]["rps"],
                "floor": results["ingest_single_floor"]["rps"],
                "floor_name": "HTTP floor: key, INSERT, orjson",
                "target": "",
            },
            {
                "figure": "conversion ingest, single posts p99 (ms)",
                "value": results["ingest_single"]["p99_ms"],
                "floor": results["ingest_single_floor"]["p99_ms"],
                "floor_name": "HTTP floor p99",
                "target": "",
            },
            {
                "figure": "conversion ingest, batches: conversions/s",
                "value": results["ingest_batch"]["conversions_per_s"],
                "target": "",
            },
            {
                "figure": "Google upload requests for 10,000 conversions",
                "value": results["upload"]["sandbox_requests"],
                "target": "5",
            },
            {"figure": "upload end to end (s)", "value": results["upload"]["seconds"], "target": ""},
            {"figure": "upload worker peak RSS (MiB)", "value": results["upload"]["peak_worker_rss_mib"], "target": ""},
            {"figure": "copies at the sandbox", "value": results["sandbox_copies"], "target": "= 10,000"},
        ],
    )


if __name__ == "__main__":
    main()
