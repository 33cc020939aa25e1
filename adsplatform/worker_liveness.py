"""Is this Celery worker consuming? A heartbeat from its consumer loop, and the probe that reads it.

A worker can stay alive and take no work again after a broker reconnect (the class reported
upstream as celery/celery#8030, #8091, #9054: the process runs, logs nothing, consumes nothing).
A live PID proves nothing then, nor does a beat-scheduled task (it proves only that *some*
worker consumed it). So the worker proves it itself, end to end, on its own task channel:

* ``Heartbeat`` is a consumer bootstep. Every ``WORKER_HEARTBEAT_INTERVAL`` seconds, from the
  consumer's event loop, it publishes a small message to a queue of this worker's own
  (``liveness.<hostname>``), which it consumes on the channel the tasks arrive on. Receiving it
  writes the time to the heartbeat file. The round trip proves the event loop runs, the broker
  connection works and the task channel is polled (BRPOP registered). A worker whose every pool
  slot is busy does not poll for more (prefetch is full), so a beat taken while every reserved
  slot holds a real task also counts: that worker is working, and its tasks' time limits guard
  it. Unless one of them runs past its hard time limit (plus ``OVERDUE_GRACE_SECONDS``): the pool
  should have killed it by then, so the slots are held by work that will not end, and the beat
  is not written (the worker is replaced as stalled).
  The step starts again with every reconnect; a consumer that never gets back to consuming never
  writes again.
* ``check()`` is the probe: the heartbeat file is younger than ``WORKER_HEARTBEAT_STALE_SECONDS``,
  or the broker does not answer (then no worker could consume: not this worker's fault, and a
  new one would wait the same way). ``manage.py worker_alive`` runs it for supervisors
  (scripts/supervisor.py, bench/reliability.py).
* ``Watchdog`` is a thread in the worker's main process doing the same check: a worker stalled
  for ``WORKER_STALL_EXIT_SECONDS`` logs CRITICAL and exits (code 70), and whatever restarts
  exited workers (Fly's restart policy, `make run`) starts a fresh one. Fly cannot act on a
  probe of a process without a port, so this is how production replaces a stalled worker.
  Tasks in hand are acks_late: Redis hands them out again after the visibility timeout, and the
  webhooks backlog sweep re-enqueues lead work long before.

The heartbeat file is ``WORKER_HEARTBEAT_FILE`` (default ``<VAR_DIR>/worker-heartbeat``).

It is a file on the worker's own machine: it drives that worker's probe and watchdog, and no other
machine reads it. Whether *any* worker takes tasks from the shared queue is the alert monitor's
question (``manage.py alert_monitor``, optimization/alerts.py): it queues a canary task and opens
"workers are not taking tasks" when none runs it in time, whichever machines the workers are on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from celery import bootsteps
from kombu import Consumer, Exchange, Queue

logger = logging.getLogger("adsplatform.worker_liveness")

EXIT_STALLED = 70  # EX_SOFTWARE
# How far past its hard time limit a task may run before its slot counts as stuck: the pool
# kills a task at its limit, and a child's exit and replacement take a few seconds.
OVERDUE_GRACE_SECONDS = 30.0


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def interval() -> float:
    return _float_env("WORKER_HEARTBEAT_INTERVAL", 5.0)


def stale_after() -> float:
    return _float_env("WORKER_HEARTBEAT_STALE_SECONDS", 60.0)


def heartbeat_file() -> Path:
    explicit = os.environ.get("WORKER_HEARTBEAT_FILE")
    if explicit:
        return Path(explicit)
    from django.conf import settings

    return Path(settings.VAR_DIR) / "worker-heartbeat"


def overdue_requests(requests, now: float | None = None) -> list:
    """The running task requests past their hard time limit plus the grace (wall-clock starts)."""
    now = time.time() if now is None else now
    late = []
    for request in requests:
        started = getattr(request, "time_start", None)
        if not started:
            continue
        hard_limit = (getattr(request, "time_limits", None) or (None, None))[0] or getattr(
            getattr(request, "task", None), "time_limit", None
        )
        if hard_limit and now - started > hard_limit + OVERDUE_GRACE_SECONDS:
            late.append(request)
    return late


def record(path: Path, now: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{time.time() if now is None else now:.3f}\n")
    os.replace(tmp, path)


def last_beat(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def broker_answers(url: str, timeout: float = 2.0) -> bool:
    """A Redis PING to the broker on a connection of its own (only Redis brokers are probed)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        return True
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def check(
    path: Path, max_age: float, broker_url: str | None, *, since: float | None = None, now: float | None = None
) -> tuple[bool, str]:
    """(alive, why): the heartbeat is fresh, or the broker is down (not the worker's fault).

    ``since``: when the worker started; a beat older than that (a previous worker's) counts from
    then, so a worker that is still booting is not judged on its predecessor's file."""
    now = time.time() if now is None else now
    beat = last_beat(path)
    if since is not None:
        beat = max(beat or since, since)
    if beat is not None and now - beat <= max_age:
        return True, f"consuming: last heartbeat {now - beat:.0f}s ago"
    age = "never" if beat is None else f"{now - beat:.0f}s ago"
    if broker_url and not broker_answers(broker_url):
        return True, f"broker unreachable: no worker can consume now (last heartbeat {age})"
    return False, f"not consuming: last heartbeat {age} (limit {max_age:.0f}s) and the broker answers"


class Heartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: a broker round trip on the task channel, every ``interval()`` s."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.path = heartbeat_file()
        self.tref = None
        self.consumer = None
        self.queue = None
        self.warned_overdue = False

    def start(self, c):
        if c.task_consumer is None or c.connection is None:
            return
        name = f"liveness.{c.hostname}"
        exchange = Exchange("celery.liveness", type="direct", durable=False)
        channel = c.task_consumer.channel
        self.queue = Queue(name, exchange, routing_key=name, durable=False, auto_delete=True, channel=channel)
        self.consumer = Consumer(channel, queues=[self.queue], callbacks=[self._on_beat], no_ack=True, accept=["json"])
        self.consumer.consume()
        self.producer = c.connection.Producer(channel)
        self.routing = (exchange, name)
        # The consumer's timer entries are cancelled when its connection fails; start() runs again
        # once it reconnects (see celery.worker.consumer.Consumer.start).
        self.tref = c.timer.call_repeatedly(interval(), self._send, (c,), priority=10)
        self._send(c)

    def _send(self, c):
        from celery.worker import state

        try:
            exchange, key = self.routing
            self.producer.publish(
                {"at": time.time()}, exchange=exchange, routing_key=key, retry=False, serializer="json"
            )
        except Exception as exc:
            logger.debug("heartbeat not sent: %r", exc)
        # Every slot holds a real task: the worker does not poll (prefetch full), but it works,
        # as long as none of them is past the time limit the pool enforces.
        limit = getattr(c.qos, "value", 0) or 0
        if limit and len(state.reserved_requests) >= limit:
            late = overdue_requests(tuple(state.active_requests))
            if not late:
                record(self.path)
            elif not self.warned_overdue:
                self.warned_overdue = True
                logger.warning(
                    "tasks past their hard time limit hold every slot; not writing the heartbeat",
                    extra={"tasks": [f"{r.name}[{r.id}]" for r in late]},
                )

    def _on_beat(self, body, message):
        record(self.path)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.consumer is not None:
            try:
                self.consumer.cancel()
            except Exception as exc:  # the connection may be gone already
                logger.debug("heartbeat consumer not cancelled: %r", exc)
            self.consumer = None

    shutdown = stop


class Watchdog(threading.Thread):
    """In the worker's main process: exit when not consuming for ``limit`` s (while the broker answers)."""

    def __init__(self, path: Path, limit: float, broker_url: str, every: float = 5.0) -> None:
        super().__init__(name="worker-liveness-watchdog", daemon=True)
        self.path, self.limit, self.broker_url, self.every = path, limit, broker_url, every
        self.started = time.time()

    def run(self) -> None:
        while True:
            time.sleep(self.every)
            alive, why = check(self.path, self.limit, self.broker_url, since=self.started)
            if alive:
                continue
            logger.critical("worker stalled, exiting so that it is replaced: %s", why)
            logging.shutdown()
            os._exit(EXIT_STALLED)


def install(app) -> None:
    """Add the heartbeat step to ``app``'s consumer and start the watchdog in worker main processes."""
    from celery import signals

    if Heartbeat not in app.steps["consumer"]:
        app.steps["consumer"].add(Heartbeat)

    @signals.worker_ready.connect(weak=False)
    def _start_watchdog(sender=None, **_: object) -> None:
        limit = _float_env("WORKER_STALL_EXIT_SECONDS", 180.0)
        if limit <= 0:
            return
        Watchdog(heartbeat_file(), limit, app.conf.broker_url or "").start()


__all__ = (
    "EXIT_STALLED",
    "Heartbeat",
    "Watchdog",
    "check",
    "heartbeat_file",
    "install",
    "overdue_requests",
    "record",
    "stale_after",
)
