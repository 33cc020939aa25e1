"""Webhook receipt under load: N posts to /api/v1/webhooks/zapier at C concurrent clients.

Starts gunicorn on a loopback ephemeral port against the database given (PostgreSQL for
figures that mean anything), posts flat Make.com leads with the shared secret, as JSON and
as form-urlencoded bodies, and prints accepted/s with p50/p99 latency for each. Beside it:

- the HTTP floor: ``bench/floor_app.py`` under the same gunicorn settings, loaded by the same
  generator in alternating rounds (secret check, the same INSERT, orjson);
- an open loop at a fixed arrival rate against both, for the tail a closed loop hides;
- the in-process floor: the same rows inserted one per transaction from C psycopg threads.
Ends with one JSON line of the results.

    .venv/bin/python bench/bench_webhooks.py --database-url postgres://postgres@127.0.0.1:5432/webhooks_bench

The broker is the embedded default (a file-system queue in a temporary VAR_DIR) unless
--redis-url is given. Processing is not measured: no worker runs, events stay "received".
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import psycopg

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
    open_loop_load,
)

PATH = "/api/v1/webhooks/zapier"
FLOOR_PATH = "/floor/webhooks"


def lead_fields(run_id: str, index: int) -> dict[str, str]:
    return {
        "lead_id": f"{run_id}-{index}",
        "full_name": "Bench Lead",
        "email": f"lead{index}@example.org",
        "phone": "+1 650 555 0123",
        "campaign_id": "50000000000",
        "form_id": "40000000000",
        "gclid": f"bench-gclid-{index}",
        "budget": str(1000 + index % 20000),
    }


def lead_body(run_id: str, index: int) -> bytes:
    return json.dumps(lead_fields(run_id, index)).encode()


def lead_form_body(run_id: str, index: int) -> bytes:
    """The same lead as a Make.com / Zapier form post, its custom answer nested the way they flatten it."""
    fields = lead_fields(run_id, index)
    fields["answers[budget]"] = fields.pop("budget")
    return urlencode(fields).encode()


# Body encodings measured, each with the content type its sender declares.
BODIES = {
    "json": (lead_body, "application/json"),
    "form": (lead_form_body, "application/x-www-form-urlencoded"),
}


def run_http(port: int, secret: str, run_id: str, total: int, concurrency: int, body: str = "json") -> LoadResult:
    """``total`` distinct leads from ``concurrency`` keep-alive clients (bench.common.http_load)."""
    encode, content_type = BODIES[body]
    headers = {"Content-Type": content_type, "X-Webhook-Secret": secret}
    return http_load(
        port, lambda index: ("POST", PATH, encode(run_id, index), headers), total=total, concurrency=concurrency
    )


def run_floor_http(port: int, secret: str, run_id: str, total: int, concurrency: int) -> LoadResult:
    """The same leads to the HTTP floor: secret check, one INSERT, orjson (bench/floor_app.py)."""
    headers = {"Content-Type": "application/json", "X-Webhook-Secret": secret}
    return http_load(
        port,
        lambda index: ("POST", FLOOR_PATH, lead_body(run_id, index), headers),
        total=total,
        concurrency=concurrency,
    )


def run_in_process_floor(database_url: str, source_id: int, run_id: str, total: int, concurrency: int) -> LoadResult:
    """The same rows, one INSERT per transaction, straight from psycopg threads: no HTTP at all."""
    result = LoadResult(requests=0, seconds=0.0)
    lock = threading.Lock()
    next_index = iter(range(total))
    headers = json.dumps({"content-type": "application/json", "user-agent": "bench"})

    def writer() -> None:
        local = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    break
                body = lead_body(run_id, index).decode()
                started = time.perf_counter()
                conn.execute(
                    "INSERT INTO webhooks_webhookevent (source_id, dedupe_key, raw_body, content_type, headers, status,"
                    " attempts, last_error, received_at) VALUES (%s, %s, %s, 'application/json', %s, 'processed', 0,"
                    " '', now())",
                    (source_id, f"lead:{run_id}-{index}", body, headers),
                )
                local.append((time.perf_counter() - started) * 1000)
        with lock:
            result.latencies_ms.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(writer) for _ in range(concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies_ms)
    return result


def stored_count(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM webhooks_webhookevent WHERE dedupe_key LIKE %s", (f"lead:{prefix}%",)
        ).fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/webhooks_bench"),
    )
    parser.add_argument("--redis-url", default="", help="Redis for cache and broker (default: embedded file broker)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    # Production's gunicorn.conf.py with its defaults: one worker per core, 4 threads each.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per gunicorn worker")
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=0,
        help="keep-alive connections per worker (default: the clients spread evenly, plus one; fly.toml's rule)",
    )
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, platform and floor")
    args = parser.parse_args()

    worker_connections = args.worker_connections or -(-args.concurrency // args.workers) + 1
    if not args.database_url.startswith("postgres"):
        raise SystemExit("The bench needs PostgreSQL (--database-url postgres://...).")
    ensure_database(args.database_url)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    secret = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "adsplatform.settings",
        "DATABASE_URL": args.database_url,
        "VAR_DIR": str(var_dir),
        # Fixed for the bench database: the source's secret, encrypted with a key derived from it,
        # must decrypt again in the next run (a fresh VAR_DIR would otherwise mint a new one).
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-webhooks-" + "0" * 40),
        "WEBHOOK_SECRET": secret,
        "REDIS_URL": args.redis_url,
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    # WEBHOOK_SECRET only creates a missing source; on a bench database kept from an earlier run the
    # source exists, so this run's secret is set the way an operator would in admin.
    seed = (
        "from django.conf import settings;from webhooks.models import WebhookSource as S;"
        "from webhooks.services import webhook_sources_invalidate as inv;"
        "s,_=S.objects.update_or_create(name='zapier',defaults={'kind':S.Kind.RELAY,"
        "'secret':settings.WEBHOOK_SECRET,'previous_secret':'','is_active':True});inv();print(s.pk)"
    )
    source_id = int(
        subprocess.run(
            [python, "manage.py", "shell", "-c", seed], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    server_env = {**env, "FLOOR_WEBHOOK_SECRET": secret, "FLOOR_WEBHOOK_SOURCE_ID": str(source_id)}
    shape = {"threads": args.threads, "worker_connections": worker_connections}
    run_id = uuid.uuid4().hex[:12]
    rounds: dict[str, list[str]] = {}
    # The platform with one optimisation taken out each (bench/stock_settings.py): what each buys.
    stock = {"DJANGO_SETTINGS_MODULE": "bench.stock_settings"}
    with (
        gunicorn(server_env, args.workers, **shape) as port,
        gunicorn(server_env, args.workers, app=FLOOR_APP, **shape) as floor_port,
        gunicorn({**server_env, **stock, "BENCH_STOCK": "receiver_middleware"}, args.workers, **shape) as chain_port,
        gunicorn({**server_env, **stock, "BENCH_STOCK": "db_backend"}, args.workers, **shape) as ping_port,
    ):
        run_http(port, secret, f"warm-{run_id}", args.warmup, args.concurrency)
        run_floor_http(floor_port, secret, f"warm-floor-{run_id}", args.warmup, args.concurrency)
        run_http(port, secret, f"warm-form-{run_id}", args.warmup, args.concurrency, body="form")
        run_http(chain_port, secret, f"warm-chain-{run_id}", args.warmup, args.concurrency)
        run_http(ping_port, secret, f"warm-ping-{run_id}", args.warmup, args.concurrency)
        per_round = args.requests // args.rounds

        def load(name: str, send: Callable[[str], LoadResult]) -> Callable[[], LoadResult]:
            def one_round() -> LoadResult:
                prefix = f"{name}-{run_id}-{len(rounds.setdefault(name, []))}-"
                rounds[name].append(prefix)
                return send(prefix)

            return one_round

        closed = alternate(
            args.rounds,
            {
                "platform": load("json", lambda p: run_http(port, secret, p, per_round, args.concurrency)),
                "platform form": load(
                    "form", lambda p: run_http(port, secret, p, per_round, args.concurrency, body="form")
                ),
                "floor": load("floor", lambda p: run_floor_http(floor_port, secret, p, per_round, args.concurrency)),
                "without receiver middleware": load(
                    "chain", lambda p: run_http(chain_port, secret, p, per_round, args.concurrency)
                ),
                "with Django's backend": load(
                    "ping", lambda p: run_http(ping_port, secret, p, per_round, args.concurrency)
                ),
            },
        )
        # Open loop at 60% of what the platform sustained, the same rate at both.
        rate = max(10.0, 0.6 * closed["platform"]["rps"])
        open_total = int(rate * 5)
        open_loop = alternate(
            args.rounds,
            {
                "platform": load(
                    "open",
                    lambda p: open_loop_load(
                        port,
                        lambda i: (
                            "POST",
                            PATH,
                            lead_body(p, i),
                            {"Content-Type": "application/json", "X-Webhook-Secret": secret},
                        ),
                        rate=rate,
                        total=open_total,
                    ),
                ),
                "floor": load(
                    "open-floor",
                    lambda p: open_loop_load(
                        floor_port,
                        lambda i: (
                            "POST",
                            FLOOR_PATH,
                            lead_body(p, i),
                            {"Content-Type": "application/json", "X-Webhook-Secret": secret},
                        ),
                        rate=rate,
                        total=open_total,
                    ),
                ),
            },
        )

    stored = sum(stored_count(args.database_url, prefix) for prefix in rounds["json"])
    form_stored = sum(stored_count(args.database_url, prefix) for prefix in rounds["form"])
    floor_stored = sum(stored_count(args.database_url, prefix) for prefix in rounds["floor"])
    measured = per_round * args.rounds
    in_process = run_in_process_floor(args.database_url, source_id, f"inproc-{run_id}", measured, args.concurrency)
    shutil.rmtree(var_dir, ignore_errors=True)
    if args.redis_url:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        client.delete("celery", *client.keys("celery\x06\x16*"))  # the messages no worker consumed, every priority

    print(
        f"\n{measured} posts to {PATH} in {args.rounds} alternating rounds, {args.concurrency} clients,"
        f" gunicorn {args.workers} workers x {args.threads} threads, {worker_connections} connections each"
    )
    for name, summary in {**closed, **{f"open {k}": v for k, v in open_loop.items()}}.items():
        print(f"{name:16}", summary)
    print("in-process floor", in_process.summary())
    print(f"stored json {stored}, form {form_stored}, floor {floor_stored} of {measured} each\n")
    platform, form, http_floor = closed["platform"], closed["platform form"], closed["floor"]
    accepted = platform["statuses"].get(202, 0)
    form_accepted = form["statuses"].get(202, 0)
    emit(
        "webhooks",
        [
            {
                "figure": f"webhooks accepted/s ({args.concurrency} clients, median of {args.rounds} rounds)",
                "value": platform["rps"],
                "floor": http_floor["rps"],
                "floor_name": "HTTP floor: secret, INSERT, orjson",
                "target": "≥ 0.5× floor",
            },
            {
                "figure": "webhook p50 (ms)",
                "value": platform["p50_ms"],
                "floor": http_floor["p50_ms"],
                "floor_name": "HTTP floor p50",
                "target": "",
            },
            {
                "figure": "webhook p99 (ms)",
                "value": platform["p99_ms"],
                "floor": http_floor["p99_ms"],
                "floor_name": "HTTP floor p99",
                "target": "< 50",
            },
            {
                "figure": f"webhook open loop {rate:,.0f}/s: p99 (ms)",
                "value": open_loop["platform"]["p99_ms"],
                "floor": open_loop["floor"]["p99_ms"],
                "floor_name": "HTTP floor, same rate",
                "target": "",
            },
            {
                "figure": "webhooks accepted/s, in-process floor",
                "value": platform["rps"],
                "floor": in_process.rps,
                "floor_name": "bare INSERT per transaction, no HTTP",
                "target": "",
            },
            {
                "figure": "webhooks accepted/s without MachineReceiverMiddleware",
                "value": closed["without receiver middleware"]["rps"],
                "floor": platform["rps"],
                "floor_name": "the platform, same rounds",
                "target": "",
            },
            {
                "figure": "webhooks accepted/s with Django's PostgreSQL backend (SELECT 1 health check)",
                "value": closed["with Django's backend"]["rps"],
                "floor": platform["rps"],
                "floor_name": "the platform, same rounds",
                "target": "",
            },
            {"figure": "webhooks stored", "value": stored, "target": f"= {measured}"},
            {
                "figure": f"webhooks accepted/s, form body ({args.concurrency} clients)",
                "value": form["rps"],
                "floor": http_floor["rps"],
                "floor_name": "HTTP floor (JSON)",
                "target": "",
            },
            {"figure": "webhook p99, form body (ms)", "value": form["p99_ms"], "target": "< 50"},
            {"figure": "webhooks stored, form body", "value": form_stored, "target": f"= {measured}"},
        ],
    )
    complete = stored == form_stored == measured
    return 0 if complete and accepted == form_accepted == measured else 1


if __name__ == "__main__":
    sys.exit(main())
