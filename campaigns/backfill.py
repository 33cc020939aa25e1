"""The first backfill of a newly added account: ``INITIAL_BACKFILL_DAYS`` (90 by default, or the
account's own ``initial_backfill_days``) of metrics, read in chunks.

Each chunk is an ordinary sync run (trigger "backfill") of at most ``BACKFILL_CHUNK_DAYS`` days,
walking back from the earliest day a successful run of the account has read until the target
day; the first chunk ends today, so a new account has its recent days first. The account's sync
lease keeps one run per account at a time, at most ``BACKFILL_MAX_CONCURRENT`` chunks are queued
or running across all accounts, and chunks are published at a lower queue priority than the
scheduled syncs: a large backfill never starves other accounts' syncs. Beat asks every minute
(``campaigns.backfill_accounts``); picking an account asks at once.

What has been read is the account's first synced day, ``AdAccount.data_from``: the sync moves it
back to the earliest ``date_from`` of its successful runs. Days before it are "no data", not zero
(campaigns.coverage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from campaigns import enqueue
from campaigns.models import AdAccount, SyncRun
from campaigns.services import account_today

logger = logging.getLogger(__name__)

# Celery priority on Redis (0 first): scheduled syncs and everything else go at 3, leads at 0.
BACKFILL_PRIORITY = 6
_BUSY = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)


def backfill_days(account: AdAccount) -> int:
    days = account.initial_backfill_days
    return settings.INITIAL_BACKFILL_DAYS if days is None else days


def first_synced_days(account_ids: list[int] | None = None) -> dict[int, date]:
    """Each account's first synced day (``AdAccount.data_from``, kept by the sync), read afresh."""
    accounts = AdAccount.objects.filter(data_from__isnull=False)
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    return {pk: day for pk, day in accounts.values_list("pk", "data_from") if day is not None}


def backfill_next_window(account: AdAccount, first_synced: date | None) -> tuple[date, date] | None:
    """The next chunk to read, or None once the target day is covered (or nothing is asked)."""
    days = backfill_days(account)
    if days <= 0:
        return None
    today = account_today(account)
    target = today - timedelta(days=days - 1)
    chunk = max(1, settings.BACKFILL_CHUNK_DAYS)
    if first_synced is None:
        return max(target, today - timedelta(days=chunk - 1)), today
    if first_synced <= target:
        return None
    return max(target, first_synced - timedelta(days=chunk)), first_synced - timedelta(days=1)


@dataclass(frozen=True)
class BackfillProgress:
    days_wanted: int
    days_read: int
    first_synced_day: date | None

    @property
    def done(self) -> bool:
        return self.days_read >= self.days_wanted

    @property
    def percent(self) -> int:
        return 100 if self.days_wanted <= 0 else min(100, 100 * self.days_read // self.days_wanted)

    def __str__(self) -> str:
        if self.days_wanted <= 0:
            return "no backfill asked"
        state = "done" if self.done else "in progress"
        return f"{self.days_read} of {self.days_wanted} days ({state})"


def backfill_progress(account: AdAccount, first_synced: date | None) -> BackfillProgress:
    wanted = backfill_days(account)
    if first_synced is None:
        return BackfillProgress(wanted, 0, None)
    read = (account_today(account) - first_synced).days + 1
    return BackfillProgress(wanted, min(max(read, 0), max(wanted, 0)), first_synced)


def backfill_enqueue_due(*, account_ids: list[int] | None = None) -> int:
    """Queue the next chunk of each account still short of its backfill, within the limit."""
    in_flight = SyncRun.objects.filter(trigger=SyncRun.Trigger.BACKFILL, status__in=_BUSY).count()
    room = settings.BACKFILL_MAX_CONCURRENT - in_flight
    if room <= 0:
        return 0
    busy = SyncRun.objects.filter(status__in=_BUSY).values("account_id")
    due = AdAccount.objects.filter(is_active=True, needs_attention=False).exclude(pk__in=busy).order_by("pk")
    if account_ids is not None:
        due = due.filter(pk__in=account_ids)
    candidates = list(due)
    firsts = first_synced_days([a.pk for a in candidates])
    queued = 0
    for account in candidates:
        if queued >= room:
            break
        window = backfill_next_window(account, firsts.get(account.pk))
        if window is None:
            continue
        _queue_chunk(account, *window)
        queued += 1
    return queued


def _queue_chunk(account: AdAccount, date_from: date, date_to: date) -> SyncRun:
    run = SyncRun.objects.create(
        account=account,
        trigger=SyncRun.Trigger.BACKFILL,
        date_from=date_from,
        date_to=date_to,
        progress=f"Backfill of {backfill_days(account)} days: queued {date_from}…{date_to}",
    )
    # Below the scheduled syncs' priority; a refused publish leaves the run queued for the sweep.
    transaction.on_commit(lambda: enqueue.sync_account(run.pk, priority=BACKFILL_PRIORITY))
    logger.info(
        "backfill chunk queued",
        extra={"account_id": account.pk, "sync_run_id": run.pk, "date_from": str(date_from), "date_to": str(date_to)},
    )
    return run


def backfill_status(accounts: list[Any]) -> dict[int, BackfillProgress]:
    """Progress of several accounts in one query (admin and the connections API)."""
    firsts = first_synced_days([a.pk for a in accounts])
    return {a.pk: backfill_progress(a, firsts.get(a.pk)) for a in accounts}


def backfills_unfinished(accounts: Any) -> list[tuple[AdAccount, BackfillProgress]]:
    """The active accounts of ``accounts`` (a queryset) still short of their first backfill, with
    how far each has come: what the sync page shows above its runs."""
    unfinished = []
    for account in accounts.filter(is_active=True).order_by("platform", "name", "pk"):
        progress = backfill_progress(account, account.data_from)
        if progress.days_wanted > 0 and not progress.done:
            unfinished.append((account, progress))
    return unfinished
