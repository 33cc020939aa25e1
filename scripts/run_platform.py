"""`make run`: bootstrap, then web + Celery worker + beat + the alert monitor (+ the sandbox), supervised.

Runs with the project's virtualenv Python. A process that exits is started again with backoff
(1 s, 2 s, 4 s ... 30 s; scripts/supervisor.py) and a line on stderr says which one, how it
ended and when it comes back. The worker also has a liveness probe (`manage.py worker_alive`):
one that is alive but not consuming fails it, and after three failures it is replaced. Only Ctrl-C (or SIGTERM) stops the whole set, and nothing is
left running after it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor import Program, Supervisor

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def _manage(*args: str) -> list[str]:
    return [PYTHON, str(ROOT / "manage.py"), *args]


def _wait_for_port(host: str, port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _ports_in_use(ports: list[tuple[str, str, int]]) -> list[str]:
    """The (variable, host, port) this run would listen on that something else already holds:
    found before anything starts, so a second checkout never bootstraps against the first one's
    sandbox and then fails on the port after the banner."""
    taken = []
    for variable, host, port in ports:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                taken.append(f"{host}:{port} ({variable})")
    return taken


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    # Web, worker and beat write their Prometheus counters side by side; /metrics merges them.
    metrics_dir = settings.VAR_DIR / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "127.0.0.1")
    supervisor = Supervisor([])

    def start(name: str, command: list[str], **options: Any) -> None:
        supervisor.add(Program(name, command, cwd=ROOT, **options))

    def stop_all(*_: object) -> None:
        # Stopping already: a second SIGTERM (make forwards the one it got to us) or Ctrl-C must not
        # cut this short and leave a process behind, e.g. a Celery worker whose warm shutdown
        # hangs on a pool child the group signal killed.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        supervisor.stop_all(grace=15)

    wanted = [("PORT", host, port)]
    if settings.ADS_SANDBOX:
        sandbox_host = settings.ADS_SANDBOX_HOST
        wanted += [
            ("ADS_SANDBOX_GOOGLE_PORT", sandbox_host, settings.ADS_SANDBOX_GOOGLE_PORT),
            ("ADS_SANDBOX_META_PORT", sandbox_host, settings.ADS_SANDBOX_META_PORT),
            ("ADS_SANDBOX_OAUTH_PORT", sandbox_host, settings.ADS_SANDBOX_OAUTH_PORT),
        ]
    taken = _ports_in_use(wanted)
    if taken:
        print(
            f"Already in use: {', '.join(taken)}. Another `make run` (or another program) holds it; stop it, "
            "or choose free ports, e.g. `PORT=8100 ADS_SANDBOX_GOOGLE_PORT=8581 ADS_SANDBOX_META_PORT=8582 "
            "ADS_SANDBOX_OAUTH_PORT=8583 make run`.",
            file=sys.stderr,
        )
        return 1

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if settings.ADS_SANDBOX:
            start("sandbox", _manage("sandbox"))
            if not _wait_for_port(settings.ADS_SANDBOX_HOST, settings.ADS_SANDBOX_META_PORT):
                print("The ad platform sandbox did not start; see its output above.", file=sys.stderr)
                stop_all()
                return 1
        subprocess.run(_manage("bootstrap"), cwd=ROOT, check=True)
        subprocess.run(_manage("collectstatic", "--noinput", "-v0"), cwd=ROOT, check=True)
        start(
            "web",
            [
                str(BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"{host}:{port}",
                "adsplatform.wsgi",
            ],
        )
        start(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "adsplatform",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                os.environ.get("CELERY_CONCURRENCY", "2"),
            ],
            # Alive is not enough: a worker can stay up and consume nothing after a broker
            # reconnect. Its heartbeat is checked every 15 s; three failures in a row replace it.
            probe=_manage("worker_alive"),
            probe_every=15,
            probe_failures=3,
            probe_grace=60,
        )
        start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "adsplatform",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
                # Writes the heartbeat the alert monitor reads ("beat has not run").
                "--scheduler",
                "optimization.beat:HeartbeatScheduler",
            ],
        )
        # Alerts are evaluated and sent here, not on the worker: a stopped or stuck worker must
        # not silence "webhooks are late" or "workers are not taking tasks" (optimization/alerts.py).
        start("alert-monitor", _manage("alert_monitor"))
        if not _wait_for_port(host, port):
            print("The web server did not start; see its output above.", file=sys.stderr)
            stop_all()
            return 1
        base = f"http://{host}:{port}"
        password_file = settings.VAR_DIR / "operator_password"
        lines = [
            "",
            "IBVI Ads Platform is running (Ctrl-C stops everything):",
            f"  admin     {base}/admin/   (user {os.environ.get('DJANGO_SUPERUSER_USERNAME') or 'admin'})",
            f"  API docs  {base}/api/docs/",
            f"  health    {base}/healthz   ready {base}/readyz   metrics {base}/metrics",
        ]
        if password_file.exists() and not os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            lines.append(f"  generated operator password: {password_file.read_text().strip()}")
        print("\n".join(lines) + "\n", flush=True)
        while True:
            supervisor.poll()  # restarts what exited
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        stop_all()
        return 0
    except subprocess.CalledProcessError as exc:
        stop_all()
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
