"""Gunicorn settings for every deployment (Fly.io and `make run`)."""

import os
import shutil
import tempfile
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads overlap database and cache waits; Django is thread-safe and keeps a connection per thread.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A keep-alive connection stays with the worker that accepted it, and the least busy worker
# accepts first, so a few long-lived clients (the proxy's connection pool, a load test) can
# pile up on one worker while another idles: a slow tail for no lack of CPU. A cap per worker
# spreads them. It must stay above what the proxy opens per machine divided by the workers
# (fly.toml: a hard_limit of 32 over 2 workers is 16 each; it sets 20), or connections would wait.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then (leak insurance); rarely, since a restart costs a second of CPU.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "0") == "1" else None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Prometheus counters from several workers are merged through files in this folder.
# When whoever started us (`make run`) already set it, that process owns the folder.
_owns_multiproc_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
_multiproc_dir = Path(
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / "ads-prometheus"))
)


def on_starting(server):
    if _owns_multiproc_dir:
        # Counters of a previous run would be added to this one's.
        shutil.rmtree(_multiproc_dir, ignore_errors=True)
    _multiproc_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    import gc

    # Everything loaded so far (Django, the apps, the SDKs) lives as long as the worker: move it
    # out of the collector's reach, so a full collection scans only what requests allocate.
    # Without this a full collection walks the whole import graph: tens of milliseconds that land
    # on whichever request triggered it (webhook p99).
    gc.freeze()


def worker_exit(server, worker):
    # Lead ids received in the last few milliseconds wait in the publisher's queue (it batches
    # them); send them now rather than leave them to the sweeper a minute from now.
    from django.apps import apps

    if not apps.ready:  # the worker died before loading the application: nothing was queued
        return
    from webhooks.services import background_publisher

    if not background_publisher.flush(timeout_seconds=5):
        server.log.warning("webhook ids still unpublished at exit; the backlog sweeper will enqueue them")
