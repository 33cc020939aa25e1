"""A health endpoint for a process that has no port: the Celery worker and beat on Fly.

Fly's checks for a process group without a service are the top-level ``[checks]`` of fly.toml,
scoped with ``processes``; they are HTTP or TCP requests to a port of the machine, never a
command run in it (its machine checks do run a command, but in a throwaway machine at deploy
time, not in the one that runs the worker). So the process is started by this module, which
answers ``GET /healthz`` for it:

    python -m adsplatform.process_health worker --port 8081 -- celery -A adsplatform worker ...

The command runs as a child with the same stdout/stderr; every signal Fly sends (SIGINT by
default, SIGTERM, ...) is passed on to it, and this process exits with its exit code, so the
restart policies and the worker's own watchdog (it exits with 70 when stalled) work as before.

What the endpoint says is the process's own proof of work, not that its PID is alive:

* ``worker``: the heartbeat file the worker writes from its consumer loop (a broker round trip on
  its task channel, adsplatform/worker_liveness.py) was written since this worker started and is
  younger than ``WORKER_HEARTBEAT_STALE_SECONDS``; or the broker does not answer (then no worker
  could consume; the same rule as ``manage.py worker_alive``).
* ``beat``: the ``beat`` heartbeat row the scheduler writes from its tick loop
  (optimization/beat.py) was written by this machine since this beat started, and is younger
  than ``--max-age``; or the database does not answer (then beat cannot write it; not judged).

A failing Fly check restarts nothing: the worker's watchdog and the restart policies do that.
It shows in ``fly checks list`` and on the dashboard, and a deploy waits for the new machines'
checks, so a release whose worker never consumes or whose beat never ticks fails the deploy
instead of going on to replace the other machines.

The port is bound on 0.0.0.0 (IPv4) only, where Fly's checks connect; other machines reach this
one over the private IPv6 network (6PN), which that does not bind.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

DEFAULT_PORT = 8081
# Beat writes its heartbeat every 15 s (optimization.beat.HEARTBEAT_SECONDS): four missed.
BEAT_MAX_AGE_SECONDS = 60.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

Probe = Callable[[], tuple[bool, str]]


def _log(message: str) -> None:
    print(f"process_health: {message}", file=sys.stderr, flush=True)


def _django_settings():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")
    from django.conf import settings

    return settings


def worker_health(started: float, *, broker_url: str | None = None, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) of the worker started at ``started`` on this machine."""
    from adsplatform import worker_liveness

    now = time.time() if now is None else now
    if broker_url is None:
        broker_url = _django_settings().CELERY_BROKER_URL
    path = worker_liveness.heartbeat_file()
    beat = worker_liveness.last_beat(path)
    if beat is not None and beat >= started:
        return worker_liveness.check(path, worker_liveness.stale_after(), broker_url, now=now)
    if broker_url and not worker_liveness.broker_answers(broker_url):
        return True, "broker unreachable: no worker can consume now"
    # Until its first round trip the worker has proved nothing (a file left by a previous one
    # does not count): a deploy waits here, Fly's grace period covers the boot.
    return False, f"starting: no heartbeat since the worker started {now - started:.0f}s ago"


def beat_health(started: float, *, max_age: float = BEAT_MAX_AGE_SECONDS, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) of the beat started at ``started`` on this machine (needs django.setup())."""
    from django.db import DatabaseError, connection

    from optimization.models import ProcessHeartbeat

    now = time.time() if now is None else now
    try:
        row = ProcessHeartbeat.objects.filter(name=ProcessHeartbeat.BEAT).first()
    except DatabaseError as exc:
        connection.close()  # the next check connects afresh
        return True, f"database unreachable ({type(exc).__name__}): beat cannot write its heartbeat now"
    written = row.beat_at.timestamp() if row is not None and row.beat_at is not None else None
    if row is None or written is None or written < started:
        return False, f"starting: no heartbeat since beat started {now - started:.0f}s ago"
    host = (row.details or {}).get("host")
    if host != socket.gethostname():
        # Two beats would send every periodic job twice: fly.toml keeps beat at one machine.
        return False, f"the last beat heartbeat was written by another machine ({host}): beat must run once"
    age = max(now - written, 0.0)
    if age > max_age:
        return False, f"not scheduling: last heartbeat {age:.0f}s ago (limit {max_age:.0f}s)"
    return True, f"scheduling: last heartbeat {age:.0f}s ago"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._answer(404, "not found")
            return
        healthy, why = self.server.judge()
        self._answer(200 if healthy else 503, why)

    do_HEAD = do_GET

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # A request every 15 s would drown the process's own log: changes are logged instead.
        pass


class _HealthServer(http.server.HTTPServer):
    # One request at a time: Fly asks every few seconds, and the beat probe keeps one connection.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], probe: Probe, name: str) -> None:
        super().__init__(address, _Handler)
        self.probe, self.name = probe, name
        self.last: bool | None = None

    def judge(self) -> tuple[bool, str]:
        try:
            healthy, why = self.probe()
        except Exception as exc:  # a probe that cannot run says so; it never takes the process down
            healthy, why = False, f"probe failed: {type(exc).__name__}: {exc}"
        if healthy != self.last:
            _log(f"{self.name} {'healthy' if healthy else 'unhealthy'}: {why}")
            self.last = healthy
        return healthy, why


def _probe(kind: str, started: float, max_age: float | None) -> Probe:
    if kind == "worker":
        return lambda: worker_health(started)
    # A database that does not answer must not hold a check for minutes (libpq waits forever).
    os.environ.setdefault("PGCONNECT_TIMEOUT", "3")
    _django_settings()
    import django

    django.setup()
    from django.db import close_old_connections

    limit = BEAT_MAX_AGE_SECONDS if max_age is None else max_age

    def probe() -> tuple[bool, str]:
        # What the end of a request does: a connection past CONN_MAX_AGE or broken is dropped.
        close_old_connections()
        return beat_health(started, max_age=limit)

    return probe


def _serve(kind: str, port: int, started: float, max_age: float | None) -> None:
    try:
        server = _HealthServer(("0.0.0.0", port), _probe(kind, started, max_age), kind)  # noqa: S104 (see the module docstring)
    except Exception as exc:
        # The process keeps running unprobed (its check then fails and says why it cannot connect).
        _log(f"no health endpoint for {kind} on port {port}: {type(exc).__name__}: {exc}")
        return
    _log(f"health endpoint for {kind} on port {port}: GET /healthz")
    server.serve_forever()


def run(kind: str, command: list[str], *, port: int = DEFAULT_PORT, max_age: float | None = None) -> int:
    """Run ``command`` behind the health endpoint of ``kind``; return its exit code."""
    started = time.time()
    # Its own session: a signal reaches it once, through us (a terminal's Ctrl-C would otherwise
    # reach both, and a second SIGINT is Celery's cold shutdown).
    child = subprocess.Popen(command, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    threading.Thread(target=_serve, args=(kind, port, started, max_age), name="health", daemon=True).start()
    code = child.wait()
    # Killed by a signal: the shell's convention, 128 + its number.
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m adsplatform.process_health",
        usage="%(prog)s {worker,beat} [--port PORT] [--max-age SECONDS] -- COMMAND...",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("kind", choices=("worker", "beat"), help="what the endpoint judges")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 0.0.0.0 (default {DEFAULT_PORT})")
    parser.add_argument("--max-age", type=float, default=None, help="beat: heartbeat age limit in seconds")
    # Everything after the first -- is the command, its own options included.
    split = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not command:
        parser.error("give the command to run after --")
    return run(args.kind, command, port=args.port, max_age=args.max_age)


if __name__ == "__main__":
    sys.exit(main())
