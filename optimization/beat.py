"""Beat's scheduler with a heartbeat the alert monitor reads: "beat has not run" is then a fact
about beat itself, not about a worker that would have to run a task beat queued.

Run beat with it: ``celery -A adsplatform beat --scheduler optimization.beat:HeartbeatScheduler``
(fly.toml and scripts/run_platform.py do). It is Celery's PersistentScheduler (the schedule file
given by ``--schedule``), plus: every ``HEARTBEAT_SECONDS`` its loop writes the ``beat`` row of
``ProcessHeartbeat``. Written from ``tick()``, the loop that sends due tasks, so a beat process
that is alive but no longer scheduling stops writing too.
"""

from __future__ import annotations

import logging
import time

from celery.beat import PersistentScheduler

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0


class HeartbeatScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs) -> None:
        self._last_heartbeat = 0.0
        self._started = True
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        wait = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._heartbeat()
            self._last_heartbeat = now
        # Wake at least this often, whatever the schedule: the heartbeat must keep coming.
        return min(wait, HEARTBEAT_SECONDS)

    def _heartbeat(self) -> None:
        from django.db import close_old_connections

        from optimization.alerts import process_heartbeat
        from optimization.models import ProcessHeartbeat

        try:
            close_old_connections()
            process_heartbeat(ProcessHeartbeat.BEAT, started=self._started, entries=len(self.schedule))
            self._started = False
        except Exception as exc:
            # The database away: beat keeps scheduling (the broker may still be there); the
            # monitor sees the heartbeat stop and says so if this lasts.
            logger.warning("beat heartbeat not written: %s", type(exc).__name__)
            from django.db import connection

            connection.close()
