"""Gunicorn settings for every deployment (Fly.io and `make run`)."""

import os
import shutil
import tempfile
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads overlap database and cache waits; Django is thread-safe and keeps a connection per thread.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
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
