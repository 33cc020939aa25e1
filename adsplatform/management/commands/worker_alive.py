"""`manage.py worker_alive`: exit 0 when the Celery worker on this machine is consuming, 1 when not.

Reads the heartbeat the worker writes from its consumer loop (adsplatform/worker_liveness.py).
A stale heartbeat while the broker answers fails; while the broker does not answer it passes
(no worker could consume then, and a new one would wait the same way). Supervisors run it as
the worker's liveness probe (scripts/run_platform.py).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from adsplatform import worker_liveness


class Command(BaseCommand):
    help = "Exit 0 if the Celery worker is consuming (fresh heartbeat, or the broker is down), else 1."

    def add_arguments(self, parser):
        parser.add_argument("--file", default=None, help="heartbeat file (default: WORKER_HEARTBEAT_FILE)")
        parser.add_argument(
            "--max-age", type=float, default=None, help="seconds (default: WORKER_HEARTBEAT_STALE_SECONDS)"
        )

    def handle(self, *args, **options):
        path = Path(options["file"]) if options["file"] else worker_liveness.heartbeat_file()
        max_age = options["max_age"] if options["max_age"] is not None else worker_liveness.stale_after()
        alive, why = worker_liveness.check(path, max_age, settings.CELERY_BROKER_URL)
        if not alive:
            raise CommandError(why)
        self.stdout.write(why)
