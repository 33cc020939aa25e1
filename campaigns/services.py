"""Writes and workflows of the campaigns app: discover accounts, sync them, invalidate caches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import DateField, F, Q, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from campaigns.enqueue import sync_account as enqueue_sync_account
from campaigns.models import AdAccount, SyncRun
from campaigns.upserts import ad_group_metric_upsert, ad_group_upsert, campaign_upsert, metric_upsert
from platforms.base import AuthError, PlatformError, RateLimitedError, TransientError
from platforms.registry import get_platform, platform_for_account

logger = logging.getLogger(__name__)

# A running sync renews its lease with every chunk it writes; a lease not renewed for this
# long belongs to a worker that died, and the next run may take it.
SYNC_LEASE_SECONDS = 10 * 60
# How long bookkeeping after a database error keeps trying (a PostgreSQL restart or
# failover takes seconds); past it, the stale-run sweep settles the run.
DATABASE_RECOVERY_SECONDS = 30
CACHE_GENERATION_KEY = "campaigns:generation"

ProgressCallback = Callable[[SyncRun], None]


class SyncAlreadyRunning(Exception):
    """Another sync of the same account holds the lease."""


# --- Cache generations -------------------------------------------------------------------


def _first_generation() -> int:
    # From the clock, not 1: a generation Redis lost (restarted, evicted) must never restart at a
    # number answers were already cached under, or those answers would be served again.
    return time.time_ns() // 1000


def campaign_cache_generation() -> int:
    """Cached campaign answers are stored beside this number; bumping it drops them all at once."""
    generation = cache.get(CACHE_GENERATION_KEY)
    if generation is None:
        cache.add(CACHE_GENERATION_KEY, _first_generation(), timeout=None)
        generation = cache.get(CACHE_GENERATION_KEY, 0)
    return int(generation)


def campaign_cache_invalidate() -> None:
    try:
        cache.incr(CACHE_GENERATION_KEY)
    except ValueError:  # no generation yet: nothing cached under one either
        cache.add(CACHE_GENERATION_KEY, _first_generation(), timeout=None)


# --- Accounts ---------------------------------------------------------------------------------


def account_discover(*, platforms: Iterable[str] = ("google", "meta")) -> list[AdAccount]:
    """Create or update an AdAccount for every account the configured credentials reach."""
    accounts: list[AdAccount] = []
    for platform in platforms:
        for found in get_platform(platform).list_accounts():
            if found.is_manager:
                continue
            account, _ = AdAccount.objects.update_or_create(
                platform=platform,
                external_id=found.external_id,
                defaults={
                    "name": found.name,
                    "currency_code": found.currency_code,
                    "time_zone": found.time_zone,
                    "manager_customer_id": found.manager_customer_id,
                },
            )
            accounts.append(account)
    return accounts


def account_flag_attention(*, account: AdAccount, reason: str) -> None:
    AdAccount.objects.filter(pk=account.pk).update(
        needs_attention=True, attention_reason=reason[:2000], updated_at=timezone.now()
    )


def account_clear_attention(*, account: AdAccount) -> None:
    AdAccount.objects.filter(pk=account.pk).update(
        needs_attention=False, attention_reason="", updated_at=timezone.now()
    )


# --- Sync runs --------------------------------------------------------------------------------


def _data_from_extended_to(day: date | None) -> dict[str, Any]:
    """The UPDATE that moves the account's first synced day back to ``day`` (never forward)."""
    if day is None:
        return {}
    read = Value(day, output_field=DateField())
    return {"data_from": Least(Coalesce(F("data_from"), read), read)}


def account_data_read_from(*, account_id: int, day: date) -> None:
    """Record that the account's metrics were read from ``day`` on (for metrics written outside a
    sync run: seeds, imports and test data)."""
    AdAccount.objects.filter(pk=account_id).update(**_data_from_extended_to(day))


def account_today(account: AdAccount) -> date:
    """Today in the account's own time zone: the platforms date metrics that way."""
    return zone_today(account.time_zone)


def zone_today(time_zone: str) -> date:
    return timezone.now().astimezone(ZoneInfo(time_zone or "UTC")).date()


def todays_by_time_zone() -> dict[str, date]:
    """Today in each time zone the accounts use (one small query): for reads that cover
    accounts in several zones and must give each its own dates."""
    zones = AdAccount.objects.order_by().values_list("time_zone", flat=True).distinct()
    return {time_zone: zone_today(time_zone) for time_zone in zones}


def account_time_zones(*, account_id: int | None = None) -> list[str]:
    """The time zones the active accounts use (or the one account's): one small query."""
    accounts = (
        AdAccount.objects.filter(is_active=True) if account_id is None else AdAccount.objects.filter(pk=account_id)
    )
    return sorted(accounts.order_by().values_list("time_zone", flat=True).distinct())


def latest_today(time_zones: Iterable[str]) -> date:
    """The latest "today" of these time zones: where a default date range ends.

    Ending it on the site's (UTC) date would leave out the day an account ahead of UTC has begun
    (Berlin's 1 January while UTC is still on 31 December), and give an account behind it an
    empty day at the end of its window. No zone (no account yet): the site's date.
    """
    return max((zone_today(time_zone) for time_zone in time_zones), default=timezone.localdate())


def latest_account_today(*, account_id: int | None = None) -> date:
    """The latest "today" of the active accounts (or of one account)."""
    return latest_today(account_time_zones(account_id=account_id))


def default_sync_window(account: AdAccount) -> tuple[date, date]:
    lookback = settings.SYNC_LOOKBACK_DAYS_GOOGLE if account.platform == "google" else settings.SYNC_LOOKBACK_DAYS_META
    today = account_today(account)
    return today - timedelta(days=lookback - 1), today


def sync_run_create(
    *, account: AdAccount, trigger: str = SyncRun.Trigger.SCHEDULED, since: date | None = None, enqueue: bool = True
) -> SyncRun:
    """Record a queued sync of ``account`` and enqueue it once the transaction commits."""
    date_from, date_to = default_sync_window(account)
    if since is not None:
        date_from = min(since, date_to)
    run = SyncRun.objects.create(account=account, trigger=trigger, date_from=date_from, date_to=date_to)
    if enqueue:
        # The broker being down must not fail the request: the run stays queued for the sweep.
        transaction.on_commit(lambda: enqueue_sync_account(run.pk))
    return run


def due_accounts(*, now: datetime | None = None) -> list[AdAccount]:
    """Active accounts whose interval has passed and that have no sync queued or running."""
    now = now or timezone.now()
    busy = SyncRun.objects.filter(status__in=(SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)).values("account_id")
    candidates = AdAccount.objects.filter(is_active=True, needs_attention=False).exclude(pk__in=busy)
    return [
        account
        for account in candidates
        if account.last_synced_at is None
        or account.last_synced_at + timedelta(minutes=account.sync_interval_minutes) <= now
    ]


def stale_queued_runs(*, grace_seconds: int = 300) -> list[SyncRun]:
    """Queued runs whose message should have been handled by now but was not (lost in a
    broker outage); a run waiting for its announced retry time is not stale."""
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        SyncRun.objects.filter(status=SyncRun.Status.QUEUED).filter(
            Q(next_attempt_at__isnull=True, created_at__lt=cutoff) | Q(next_attempt_at__lt=cutoff)
        )
    )


def sync_run_retry_at(*, run: SyncRun, delay_seconds: float) -> None:
    SyncRun.objects.filter(pk=run.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds))


def _take_lease(run: SyncRun) -> bool:
    """Take the account's lease, free or lapsed. A fresh lease is never re-entered, not even by
    its own run: a second delivery of a run's message (a redelivery while the first still
    works) would otherwise sync the same account twice at once."""
    now = timezone.now()
    stale = now - timedelta(seconds=SYNC_LEASE_SECONDS)
    taken = AdAccount.objects.filter(
        Q(sync_lease_run_id__isnull=True) | Q(sync_lease_taken_at__lt=stale),
        pk=run.account_id,
    ).update(sync_lease_run_id=run.pk, sync_lease_taken_at=now)
    return taken == 1


def _release_lease(run: SyncRun) -> None:
    AdAccount.objects.filter(pk=run.account_id, sync_lease_run_id=run.pk).update(
        sync_lease_run_id=None, sync_lease_taken_at=None
    )


def _save_progress(run: SyncRun, text: str, progress: ProgressCallback | None) -> None:
    run.progress = text[:255]
    SyncRun.objects.filter(pk=run.pk).update(
        progress=run.progress, campaigns_synced=run.campaigns_synced, metric_rows_synced=run.metric_rows_synced
    )
    # The heartbeat: a lease that stops being renewed is free for the next run.
    AdAccount.objects.filter(pk=run.account_id, sync_lease_run_id=run.pk).update(sync_lease_taken_at=timezone.now())
    if progress:
        progress(run)


def _despite_database_errors(write: Callable[[], None]) -> bool:
    """Run a bookkeeping write, reconnecting while the database comes back.

    After PostgreSQL restarts, the connection Django holds is dead; closing it makes the
    next query open a fresh one. Returns False when the database stayed away.
    """
    deadline = time.monotonic() + DATABASE_RECOVERY_SECONDS
    while True:
        try:
            write()
            return True
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                logger.error("database unavailable; the stale-run sweep will settle this run")
                return False
            time.sleep(1)


def campaign_sync(*, run: SyncRun, progress: ProgressCallback | None = None) -> SyncRun:
    """Run one sync: campaigns and budgets, then the metrics window; record everything on ``run``.

    Platform errors are recorded and re-raised for the caller (the task) to decide on a
    retry. Data already written stays: every chunk holds fresher numbers than before, and
    nothing is deleted, so a failed run leaves the last good data in place.
    """
    account = run.account
    if not _take_lease(run):
        if AdAccount.objects.filter(pk=account.pk, sync_lease_run_id=run.pk).exists():
            # This very run is being synced by another delivery of its message: leave it be.
            raise SyncAlreadyRunning(f"sync run {run.pk} is already running")
        run.status = SyncRun.Status.SKIPPED
        run.finished_at = timezone.now()
        run.progress = "Another sync of this account is running."
        run.save(update_fields=["status", "finished_at", "progress"])
        raise SyncAlreadyRunning(f"account {account.pk} is already being synced")

    run.status = SyncRun.Status.RUNNING
    run.started_at = timezone.now()
    run.finished_at = None
    run.attempts += 1
    run.campaigns_synced = run.metric_rows_synced = run.ad_groups_synced = run.ad_group_metric_rows_synced = 0
    run.save(
        update_fields=[
            "status",
            "started_at",
            "finished_at",
            "attempts",
            "campaigns_synced",
            "metric_rows_synced",
            "ad_groups_synced",
            "ad_group_metric_rows_synced",
        ]
    )
    adapter = platform_for_account(account)
    # Every run is created with its window (sync_run_create, the backfill); the columns are
    # nullable for rows made by hand only.
    date_from, date_to = cast(date, run.date_from), cast(date, run.date_to)
    try:
        _save_progress(run, "Reading campaigns…", progress)
        run.campaigns_synced = campaign_upsert(
            account=account, campaigns=adapter.list_campaigns(account), synced_at=run.started_at
        )
        _save_progress(run, f"{run.campaigns_synced} campaigns; reading ad groups…", progress)
        run.ad_groups_synced = ad_group_upsert(
            account=account, ad_groups=adapter.list_ad_groups(account), synced_at=run.started_at
        )
        objects = f"{run.campaigns_synced} campaigns, {run.ad_groups_synced} ad groups"
        _save_progress(run, f"{objects}; reading metrics {run.date_from}…{run.date_to}", progress)

        def on_chunk(rows_so_far: int) -> None:
            run.metric_rows_synced = rows_so_far
            _save_progress(run, f"{objects}; {rows_so_far} campaign metric rows so far", progress)

        run.metric_rows_synced = metric_upsert(
            account=account,
            rows=adapter.iter_daily_metrics(account, date_from, date_to),
            on_chunk=on_chunk,
        )

        def on_ad_group_chunk(rows_so_far: int) -> None:
            run.ad_group_metric_rows_synced = rows_so_far
            _save_progress(run, f"{objects}; {rows_so_far} ad group metric rows so far", progress)

        run.ad_group_metric_rows_synced = ad_group_metric_upsert(
            account=account,
            rows=adapter.iter_ad_group_daily_metrics(account, date_from, date_to),
            on_chunk=on_ad_group_chunk,
        )
    except PlatformError as exc:
        _despite_database_errors(partial(_record_failure, run, exc))
        if isinstance(exc, AuthError):
            account_flag_attention(account=account, reason=f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        _despite_database_errors(partial(_record_failure, run, exc))
        raise
    finally:
        _despite_database_errors(partial(_release_lease, run))

    finished = timezone.now()
    run.status = SyncRun.Status.SUCCEEDED
    run.finished_at = finished
    run.progress = (
        f"Done: {run.campaigns_synced} campaigns, {run.ad_groups_synced} ad groups, "
        f"{run.metric_rows_synced + run.ad_group_metric_rows_synced} metric rows."
    )
    run.error_class = run.error_message = ""
    run.save()
    # A sync that succeeded proves the credentials and configuration work again: the flag that
    # paused the scheduled syncs (set on an auth or configuration failure) is cleared with it.
    AdAccount.objects.filter(pk=account.pk).update(
        last_synced_at=finished, needs_attention=False, attention_reason="", **_data_from_extended_to(run.date_from)
    )
    transaction.on_commit(campaign_cache_invalidate)
    logger.info(
        "sync finished",
        extra={
            "account_id": account.pk,
            "sync_run_id": run.pk,
            "campaigns": run.campaigns_synced,
            "metric_rows": run.metric_rows_synced,
            "ad_groups": run.ad_groups_synced,
            "ad_group_metric_rows": run.ad_group_metric_rows_synced,
            "seconds": run.duration_seconds,
        },
    )
    return run


def _record_failure(run: SyncRun, exc: Exception) -> None:
    # A lost database connection is as passing as an unreachable platform.
    retryable = isinstance(exc, TransientError | OperationalError | InterfaceError)
    run.status = SyncRun.Status.QUEUED if retryable else SyncRun.Status.FAILED
    run.finished_at = None if retryable else timezone.now()
    run.error_class = type(exc).__name__
    run.error_message = str(exc)[:4000]
    if isinstance(exc, RateLimitedError):
        run.progress = f"Rate limited; retrying in {exc.retry_after_seconds:.0f}s."
    elif isinstance(exc, TransientError):
        run.progress = "Platform unavailable; retrying with backoff."
    elif retryable:
        run.progress = "Database connection lost; retrying with backoff."
    else:
        run.progress = "Failed; the last good data is unchanged."
    run.save()
    logger.warning(
        "sync failed",
        extra={
            "account_id": run.account_id,
            "sync_run_id": run.pk,
            "error_class": run.error_class,
            "retryable": retryable,
        },
    )


def sync_runs_settle_abandoned() -> int:
    """Runs still "running" whose worker died (its lease lapsed or was taken over) are
    failed, and their leases freed, so no half-written run ever reads as current."""
    stale = timezone.now() - timedelta(seconds=SYNC_LEASE_SECONDS)
    settled = 0
    for run in SyncRun.objects.filter(status=SyncRun.Status.RUNNING).select_related("account"):
        account = run.account
        lease_is_ours = account.sync_lease_run_id == run.pk
        if lease_is_ours and account.sync_lease_taken_at and account.sync_lease_taken_at >= stale:
            continue  # alive: it renewed its lease recently
        settled += SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED,
            finished_at=timezone.now(),
            error_class="WorkerLost",
            error_message="The sync stopped without finishing (worker or database lost); the next run redoes it.",
            progress="Abandoned; the last good data is unchanged.",
        )
        _release_lease(run)
    return settled


def sync_run_give_up(*, run: SyncRun) -> None:
    """The task ran out of retries: the run is failed for good (no retry is due any more)."""
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.FAILED, finished_at=timezone.now(), next_attempt_at=None
    )
