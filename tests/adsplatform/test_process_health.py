"""The health endpoint Fly's [checks] ask for the worker and beat (adsplatform/process_health.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adsplatform import process_health, worker_liveness

ROOT = Path(__file__).resolve().parents[2]

# Stands in for the Celery worker: writes the heartbeat file the way its consumer loop does,
# once told to ("go" exists) and until told to stall ("stall" exists); on SIGTERM it notes the
# signal and exits 3, so that forwarding and the exit code can be seen from outside.
FAKE_WORKER = """
import os, signal, sys, time
from pathlib import Path
beat, go, stall, got = Path(os.environ["WORKER_HEARTBEAT_FILE"]), *map(Path, sys.argv[1:4])

def stop(signum, frame):
    got.write_text(str(signum))
    sys.exit(3)

signal.signal(signal.SIGTERM, stop)
while True:
    if go.exists() and not stall.exists():
        beat.write_text(f"{time.time():.3f}\\n")
    time.sleep(0.1)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (where the endpoint binds)
        return sock.getsockname()[1]


def _get(port: int, path: str = "/healthz") -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None  # not listening yet


def _wait_for(port: int, status: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _get(port)
        if last is not None and last[0] == status:
            return last[1]
        time.sleep(0.2)
    raise AssertionError(f"no {status} from the health endpoint within {timeout}s (last answer: {last})")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, **extra}


def test_worker_endpoint_follows_the_heartbeat_and_signals_and_exit_code_pass_through(tmp_path):
    port, heartbeat = _free_port(), tmp_path / "worker-heartbeat"
    go, stall, got = tmp_path / "go", tmp_path / "stall", tmp_path / "got"
    # A file left by a previous worker on this machine, fresh but older than this one's start.
    worker_liveness.record(heartbeat)
    env = _env(tmp_path, WORKER_HEARTBEAT_FILE=str(heartbeat), WORKER_HEARTBEAT_STALE_SECONDS="1")
    command = [sys.executable, "-c", FAKE_WORKER, str(go), str(stall), str(got)]
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "adsplatform.process_health", "worker", "--port", str(port), "--", *command],
        cwd=ROOT,
        env=env,
    )
    try:
        assert "starting: no heartbeat since the worker started" in _wait_for(port, 503)

        go.touch()
        assert _wait_for(port, 200).startswith("consuming: last heartbeat")

        stall.touch()  # alive, but its consumer loop no longer comes round
        assert _wait_for(port, 503).startswith("not consuming: last heartbeat")
        assert _get(port, "/")[0] == 404

        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=10) == 3, "the command's exit code is the wrapper's"
        assert got.read_text() == str(int(signal.SIGTERM)), "the signal reached the command"
        assert _get(port) is None, "the endpoint goes with the process"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()


@pytest.mark.parametrize(
    ("code", "expected"),
    [("raise SystemExit(70)", 70), ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9)],
)
def test_the_commands_exit_reaches_the_restart_policy(tmp_path, code, expected):
    # 70 is the worker watchdog's "stalled"; a signal death reads as the shell writes it.
    wrapper = [sys.executable, "-m", "adsplatform.process_health", "worker", "--port", str(_free_port())]
    result = subprocess.run(
        [*wrapper, "--", sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(tmp_path),
        timeout=30,
    )
    assert result.returncode == expected


def test_worker_health_counts_only_this_workers_heartbeat(tmp_path, monkeypatch):
    from django.conf import settings

    heartbeat = tmp_path / "worker-heartbeat"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(heartbeat))
    monkeypatch.setenv("WORKER_HEARTBEAT_STALE_SECONDS", "60")
    started = time.time()
    worker_liveness.record(heartbeat, now=started - 5)  # the previous worker's
    healthy, why = process_health.worker_health(started)
    assert not healthy and why.startswith("starting")

    worker_liveness.record(heartbeat, now=started + 2)
    assert process_health.worker_health(started, now=started + 10) == (True, "consuming: last heartbeat 8s ago")
    healthy, why = process_health.worker_health(started, now=started + 2 + 61)
    if settings.CELERY_BROKER_URL.startswith("redis"):
        # The broker answers (a real Redis PING): the worker, not the broker, is at fault.
        assert not healthy and why.startswith("not consuming")

    # Nothing listens on port 1: no worker could consume, so this one is not judged.
    healthy, why = process_health.worker_health(started + 100, broker_url="redis://127.0.0.1:1/0")
    assert healthy and why.startswith("broker unreachable")


@pytest.mark.django_db
def test_beat_health_reads_the_heartbeat_beats_scheduler_writes():
    from optimization.alerts import process_heartbeat
    from optimization.models import ProcessHeartbeat

    started = time.time()
    healthy, why = process_health.beat_health(started)
    assert not healthy and why.startswith("starting"), why

    # What HeartbeatScheduler.tick() writes (optimization/beat.py), host and all.
    process_heartbeat(ProcessHeartbeat.BEAT, started=True, entries=12)
    healthy, why = process_health.beat_health(started)
    assert healthy and why.startswith("scheduling: last heartbeat")

    healthy, why = process_health.beat_health(started, max_age=60, now=time.time() + 61)
    assert not healthy and why.startswith("not scheduling"), "beat alive but its loop stopped"

    healthy, why = process_health.beat_health(time.time() + 5)
    assert not healthy and why.startswith("starting"), "a heartbeat from before this beat started"

    ProcessHeartbeat.objects.filter(name=ProcessHeartbeat.BEAT).update(details={"host": "another-machine"})
    healthy, why = process_health.beat_health(started)
    assert not healthy and "another machine (another-machine)" in why


def test_beat_health_does_not_judge_beat_while_the_database_is_away(tmp_path):
    # A real connection attempt to a port nothing listens on, in a process of its own.
    probe = "import django; django.setup(); from adsplatform.process_health import beat_health; print(beat_health(0.0))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=_env(
            tmp_path,
            DJANGO_SETTINGS_MODULE="adsplatform.settings",
            DATABASE_URL="postgres://postgres@127.0.0.1:1/none",
            PGCONNECT_TIMEOUT="2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("(True, 'database unreachable (OperationalError)")
