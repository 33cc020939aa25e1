"""A Celery worker that loses Redis with a task in hand reconnects instead of exiting.

Celery 5.7.0 alone exits then with "Unrecoverable error: AttributeError('NoneType' object has
no attribute 'hostname')" (see adsplatform/kombu_fixes.py). On a redis-server of the test's
own, so the machine's Redis is never touched.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import suppress

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs a redis-server binary")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start")


def test_connection_lost_during_brpop_with_a_message_in_hand_closes_without_error():
    """What Celery 5.7.0's consumer does on a lost connection, step by step, on a real Redis.

    The worker's task channel holds a message delivered and not acknowledged and waits in BRPOP;
    a second channel (the worker's remote-control one) waits too. Redis goes. ``collect()`` closes
    the task channel, which fails at its pending BRPOP reply, then the transport's channels, which
    stops at the first one failing (the newer channel), and drops the transport. ``close()``
    then closes the task channel again and restores its message through the dropped transport:
    unpatched, AttributeError (not a connection error, so the worker exits)."""
    from kombu import Connection

    from adsplatform import kombu_fixes

    kombu_fixes.install()
    port = _free_port()
    redis = _redis(port)
    try:
        connection = Connection(f"redis://127.0.0.1:{port}/0", transport_options={"socket_connect_timeout": 1})
        tasks = connection.default_channel
        control = connection.channel()
        with connection.SimpleQueue("reconnect-test") as queue:
            queue.put({"lead": 1})
        for channel in (tasks, control):
            channel.queue_declare("reconnect-test")
        assert tasks.basic_get("reconnect-test", no_ack=False) is not None
        assert tasks.qos._delivered  # in hand, unacknowledged
        for channel in (tasks, control):
            channel.basic_consume("reconnect-test", False, lambda *_: None, f"reconnect-test-{id(channel)}")
            connection.transport.cycle._register_BRPOP(channel)  # waiting for more work
            assert channel._in_poll
        redis.terminate()
        redis.wait(timeout=10)
        with suppress(Exception):
            connection.collect(socket_timeout=1)
        connection.close()  # unpatched: AttributeError: 'NoneType' object has no attribute 'hostname'
        for channel in (tasks, control):
            channel.qos._on_collect.cancel()  # no restore attempt against the stopped Redis at exit
    finally:
        redis.kill()
        redis.wait()


def test_the_platforms_celery_app_installs_the_fix():
    from adsplatform import celery as _celery_app  # noqa: F401
    from adsplatform import kombu_fixes

    assert kombu_fixes.installed()


# --- A worker that is alive but not consuming is found out (adsplatform/worker_liveness.py) -------------


def _worker(tmp_path, port: int, **env: str) -> subprocess.Popen:
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "adsplatform.settings",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "VAR_DIR": str(tmp_path / "var"),
        "WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        "WORKER_HEARTBEAT_INTERVAL": "1",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "adsplatform",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"liveness-{port}@%h",
        ],
        cwd=root,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _now() -> float:
    """The machine's clock: the worker writes it, and the tests' own clock is pinned (conftest)."""
    return float(subprocess.check_output(["date", "+%s.%N"]))


def _age(path) -> float | None:
    from adsplatform import worker_liveness

    beat = worker_liveness.last_beat(path)
    return None if beat is None else _now() - beat


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _stop(worker: subprocess.Popen) -> None:
    import os
    import signal

    with suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def test_the_heartbeat_stops_during_an_outage_and_comes_back_after_the_reconnect(tmp_path):
    """The beat is a broker round trip on the task channel: fresh while consuming, stale while
    Redis is gone (the probe passes then: no worker could consume), fresh again once reconnected."""
    from adsplatform import worker_liveness

    port = _free_port()
    redis = _redis(port)
    worker = _worker(tmp_path, port)
    beat = tmp_path / "heartbeat"
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert _until(lambda: (_age(beat) or 99) < 2, 60), (tmp_path / "worker.log").read_text()[-3000:]
        assert worker_liveness.check(beat, 5, url, now=_now())[0]
        redis.terminate()
        redis.wait(timeout=10)
        time.sleep(4)
        assert _age(beat) > 3
        alive, why = worker_liveness.check(beat, 3, url, now=_now())
        assert alive and "broker unreachable" in why
        redis = _redis(port)
        # Its reconnect retries are 2 s, 4 s ...: consuming again within one of them.
        assert _until(lambda: (_age(beat) or 99) < 2, 20), (tmp_path / "worker.log").read_text()[-3000:]
        assert worker.poll() is None
    finally:
        _stop(worker)
        redis.kill()
        redis.wait()


def test_a_worker_alive_but_not_consuming_exits_so_it_is_replaced(tmp_path):
    """Redis answers PING but takes no writes (CLIENT PAUSE WRITE): the worker's process is up and
    consumes nothing. The probe says so, and the worker's watchdog exits (code 70) for the
    supervisor (Fly's restart policy, `make run`) to start a fresh one. Without the liveness
    wiring this worker would sit there for good."""
    from adsplatform import worker_liveness

    port = _free_port()
    redis = _redis(port)
    worker = _worker(tmp_path, port, WORKER_STALL_EXIT_SECONDS="6")
    beat = tmp_path / "heartbeat"
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert _until(lambda: (_age(beat) or 99) < 2, 60), (tmp_path / "worker.log").read_text()[-3000:]
        import redis as redis_client

        redis_client.Redis.from_url(url).execute_command("CLIENT", "PAUSE", "60000", "WRITE")
        assert _until(lambda: not worker_liveness.check(beat, 4, url, now=_now())[0], 20)
        assert "not consuming" in worker_liveness.check(beat, 4, url, now=_now())[1]
        assert _until(lambda: worker.poll() is not None, 40), "the stalled worker did not exit"
        assert worker.returncode == worker_liveness.EXIT_STALLED
        assert "worker stalled" in (tmp_path / "worker.log").read_text()
    finally:
        _stop(worker)
        redis.kill()
        redis.wait()


def test_a_task_past_its_hard_time_limit_no_longer_counts_as_work():
    """Every slot busy counts as alive only while no task has outrun the limit the pool enforces."""
    from types import SimpleNamespace

    from adsplatform import worker_liveness
    from webhooks import tasks

    now = time.time()
    deliver = SimpleNamespace(time_limit=tasks.deliver_lead.time_limit)
    fresh = SimpleNamespace(time_start=now - 5, time_limits=(None, None), task=deliver)
    hung = SimpleNamespace(time_start=now - deliver.time_limit - 60, time_limits=(None, None), task=deliver)
    limited = SimpleNamespace(time_start=now - 200, time_limits=(100, None), task=SimpleNamespace(time_limit=None))
    not_started = SimpleNamespace(time_start=None, time_limits=(None, None), task=deliver)
    assert worker_liveness.overdue_requests([fresh, not_started], now=now) == []
    assert worker_liveness.overdue_requests([fresh, hung, limited], now=now) == [hung, limited]
    # Lead work is short: its limits are minutes, so a hung lead task frees its slot long before half an hour.
    assert tasks.deliver_lead.time_limit <= 120 and tasks.process_webhook_events.time_limit <= 120
