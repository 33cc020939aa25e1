"""`python manage.py sync_accounts [--account ID] [--since DATE]`: sync now, in this process."""

from __future__ import annotations

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError

from campaigns import services
from campaigns.models import AdAccount, SyncRun
from platforms.base import PlatformError, RateLimitedError, TransientError

# A sync by hand waits out a rate limit or an outage itself, as the worker's task would, this
# many times and at most this long each time; after that the run is given up (not left queued
# for a worker to finish behind the operator's back).
RETRIES = 3
MAX_WAIT_SECONDS = 300


class Command(BaseCommand):
    help = "Sync accounts by hand (all active ones by default); --since backfills metrics from a date."

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, action="append", help="AdAccount id (repeatable).")
        parser.add_argument("--since", type=dt.date.fromisoformat, help="Backfill metrics from this date (YYYY-MM-DD).")

    def handle(self, *args, account=None, since=None, **options):
        accounts = AdAccount.objects.filter(pk__in=account) if account else AdAccount.objects.filter(is_active=True)
        if account and len(accounts) != len(set(account)):
            missing = set(account) - {a.pk for a in accounts}
            raise CommandError(f"No account with id {', '.join(map(str, sorted(missing)))}.")
        failures = 0
        for ad_account in accounts:
            trigger = SyncRun.Trigger.BACKFILL if since else SyncRun.Trigger.MANUAL
            run = services.sync_run_create(account=ad_account, trigger=trigger, since=since, enqueue=False)
            started = time.monotonic()
            self.stdout.write(f"Syncing {ad_account} ({run.date_from} → {run.date_to})")

            def show(progress_run: SyncRun, started=started) -> None:
                self.stdout.write(f"\r  {progress_run.progress}  [{time.monotonic() - started:.1f}s]", ending="")
                self.stdout.flush()

            try:
                self._sync_with_retries(run, show)
            except (PlatformError, services.SyncAlreadyRunning) as exc:
                failures += 1
                self.stdout.write("")
                self.stderr.write(self.style.ERROR(f"  failed: {type(exc).__name__}: {exc}"))
                continue
            self.stdout.write("")
            self.stdout.write(
                self.style.SUCCESS(
                    f"  {run.campaigns_synced} campaigns, {run.metric_rows_synced} metric rows in {run.duration_seconds:.1f}s"
                )
            )
        if failures:
            raise CommandError(f"{failures} of {len(accounts)} syncs failed; see the sync runs in admin.")

    def _sync_with_retries(self, run: SyncRun, show) -> None:
        for attempt in range(RETRIES + 1):
            try:
                services.campaign_sync(run=run, progress=show)
                return
            except TransientError as exc:
                if attempt == RETRIES:
                    services.sync_run_give_up(run=run)
                    raise
                wait = min(
                    exc.retry_after_seconds if isinstance(exc, RateLimitedError) else 2 ** (attempt + 2),
                    MAX_WAIT_SECONDS,
                )
                self.stdout.write("")
                self.stdout.write(self.style.WARNING(f"  {type(exc).__name__}: {exc}; trying again in {wait:.0f}s"))
                time.sleep(wait)
                run.refresh_from_db()
