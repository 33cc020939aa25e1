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
