"""Conversions benchmark: 10,000 Google click conversions, ingested over HTTP, uploaded through the sandbox.

    .venv/bin/python bench/bench_conversions.py                      # SQLite in a temporary folder
    DATABASE_URL=postgres://... .venv/bin/python bench/bench_conversions.py   # a database of its own

1. Starts both emulators (ephemeral ports, a temporary CA) and a gunicorn on a loopback port.
2. Ingest: half the conversions one per request, half in batches, each from 16 concurrent
   clients with X-Service-Auth; requests/s and conversions/s for each.
3. Upload: a separate worker process runs the uploader once; Google should see 5 requests of
   2,000. Reports requests, end-to-end time, the worker's peak memory, copies at the sandbox.

The last line of output is one JSON object with every figure. The database named by
DATABASE_URL is emptied of conversions first: give it one of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import emit, free_port  # noqa: E402

sys.path.insert(0, str(ROOT))

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


def post_all(url: str, key: str, bodies: list, clients: int) -> tuple[float, int]:
    """POST every body from ``clients`` threads, each with its own keep-alive session."""
    local = threading.local()
    failures = 0
    lock = threading.Lock()

    def send(body) -> None:
        nonlocal failures
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update({"X-Service-Auth": key, "Content-Type": "application/json"})
        response = session.post(url, data=json.dumps(body), timeout=60)
        if response.status_code not in (200, 202):
            with lock:
                failures += 1
                if failures <= 3:
                    print(f"  {response.status_code}: {response.text[:300]}", file=sys.stderr)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - start, failures


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer at {url}")


def worker() -> None:
    """The upload, as a Celery worker would run it; prints its figures as JSON."""
    django_setup()
    from conversions import services

    start = time.perf_counter()
    summary = services.conversions_upload_pending()
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_mib": round(peak_kib / 1024, 1), **summary.as_dict()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversions", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=4)
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
    env = {
        **os.environ,
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
    from conversions.models import Conversion, IngestRequest

    call_command("migrate", interactive=False, verbosity=0)
    bootstrap.run(stdout=sys.stderr)
    Conversion.objects.all().delete()
    IngestRequest.objects.all().delete()
    database = connection.vendor
    connection.close()

    port = free_port()
    web = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "adsplatform.wsgi",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.web_workers),
            "--max-requests",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict = {"benchmark": "conversions", "database": database, "conversions": args.conversions}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz")
        url = f"{base}/api/v1/conversions/google"
        run_id = uuid.uuid4().hex[:8]
        now = datetime.now(UTC).replace(microsecond=0)
        bodies = [conversion(run_id, n, now) for n in range(args.conversions)]
        half = args.conversions // 2
        singles, batched = bodies[:half], bodies[half:]
        batches = [{"conversions": batched[i : i + args.batch_size]} for i in range(0, len(batched), args.batch_size)]

        seconds, failures = post_all(url, service_key, singles, CLIENTS)
        results["ingest_single"] = {
            "requests": len(singles),
            "seconds": round(seconds, 2),
            "requests_per_s": round(len(singles) / seconds, 1),
            "failures": failures,
        }
        seconds, failures = post_all(url, service_key, batches, CLIENTS)
        results["ingest_batch"] = {
            "requests": len(batches),
            "batch_size": args.batch_size,
            "seconds": round(seconds, 2),
            "requests_per_s": round(len(batches) / seconds, 1),
            "conversions_per_s": round(len(batched) / seconds, 1),
            "failures": failures,
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
    finally:
        web.terminate()
        web.wait(timeout=30)
        google.stop()
        meta.stop()
    print(json.dumps(results))
    emit(
        "conversions",
        [
            {
                "figure": "conversion ingest, single posts req/s (16 clients)",
                "value": results["ingest_single"]["requests_per_s"],
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
