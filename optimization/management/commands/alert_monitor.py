"""`manage.py alert_monitor`: evaluate the alerts and send their notifications, every ~20 s, from
a process of its own, so that a stopped or stuck Celery worker cannot silence the alert that
should say so. See optimization/alerts.py for what it watches and why.

Runs until SIGTERM / SIGINT (finishing the cycle in hand). Several may run: an advisory lock in
PostgreSQL lets one evaluate at a time; the others stand by and take over when it stops.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from optimization import alerts

logger = logging.getLogger("optimization.alert_monitor")


class Command(BaseCommand):
    help = "Evaluate alerts and send notifications every --interval seconds, independently of the Celery worker."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between evaluations (default: ALERT_MONITOR_INTERVAL_SECONDS, 20)",
        )
        parser.add_argument("--once", action="store_true", help="run one cycle and exit (for cron or a check)")

    def handle(self, *args, **options):
        interval = (
            options["interval"] if options["interval"] is not None else alerts.tunable("ALERT_MONITOR_INTERVAL_SECONDS")
        )
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if options["once"]:
            changes = alerts.monitor_cycle()
            if changes is None:
                self.stdout.write("another alert monitor holds the lock; nothing done")
            else:
                self.stdout.write(
                    f"opened {len(changes.opened)}, resolved {len(changes.resolved)}, notified {changes.notified}"
                )
            return
        stop = threading.Event()

        def _stop(signum, _frame) -> None:
            logger.info("alert monitor stopping", extra={"signal": signum})
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        logger.info("alert monitor started", extra={"interval": interval})
        self.stdout.write(f"alert monitor: evaluating every {interval:g} s (Ctrl-C stops)", ending="\n")
        self.stdout.flush()

        def _report(changes) -> None:
            if changes is not None and (changes.opened or changes.resolved or changes.notified):
                logger.info(
                    "alert monitor cycle",
                    extra={
                        "opened": [f"{a.kind}:{a.subject}" for a in changes.opened],
                        "resolved": [f"{a.kind}:{a.subject}" for a in changes.resolved],
                        "notified": changes.notified,
                    },
                )

        alerts.monitor_run(interval=interval, stop=stop, on_cycle=_report)
