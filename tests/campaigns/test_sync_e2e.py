"""Sync end to end: beat → task → official SDK → sandbox over real sockets → database."""

from __future__ import annotations

import datetime as dt

import pytest
from celery.exceptions import Retry

from adsplatform.celery import app as celery_app
from campaigns import services, tasks
from campaigns.models import AdAccount, Campaign, DailyMetric, SyncRun
from platforms.registry import get_platform

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def accounts(sandbox):
    """The sandbox's ad accounts, discovered the way `make run` does."""
    return {(a.platform, a.external_id): a for a in services.account_discover()}


@pytest.fixture
def eager_tasks():
    """Tasks enqueued on commit run in this process, as a worker would run them."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def _snapshot(account: AdAccount) -> tuple[list, list]:
    campaigns = list(
        Campaign.objects.filter(account=account)
        .order_by("external_id")
        .values_list("external_id", "name", "status", "daily_budget_micros", "budget_is_shared")
    )
    metrics = list(
        DailyMetric.objects.filter(campaign__account=account)
        .order_by("campaign__external_id", "date")
        .values_list(
            "campaign__external_id",
            "date",
            "impressions",
            "clicks",
            "cost_micros",
            "conversions",
            "conversion_value_micros",
        )
    )
    return campaigns, metrics


def test_discovery_finds_both_platforms(accounts):
    platforms = sorted({platform for platform, _ in accounts})
    assert platforms == ["google", "meta"]
    google = [a for (p, _), a in accounts.items() if p == "google"]
    assert len(google) == 2 and all(a.manager_customer_id for a in google)
    meta = next(a for (p, _), a in accounts.items() if p == "meta")
    assert meta.currency_code == "EUR" and meta.time_zone == "Europe/Berlin"


def test_beat_discovers_the_sandbox_accounts_start_up_could_not_reach(sandbox, settings):
    settings.ADS_SANDBOX = True
    entry = celery_app.conf.beat_schedule["campaigns-discover-sandbox-accounts"]
    # Start-up found nothing (the sandbox was not up yet): beat's next run finds both platforms.
    assert not AdAccount.objects.exists()
    assert celery_app.tasks[entry["task"]].apply().get() == 3
    assert sorted(AdAccount.objects.values_list("platform", flat=True)) == ["google", "google", "meta"]
    # Once every platform has its accounts, the job asks the platforms nothing more.
    requests_before = len(sandbox.meta.state.requests)
    assert celery_app.tasks[entry["task"]].apply().get() == 0
    assert len(sandbox.meta.state.requests) == requests_before
    settings.ADS_SANDBOX = False  # real credentials: accounts are the operator's choice
    AdAccount.objects.filter(platform="meta").delete()
    assert celery_app.tasks[entry["task"]].apply().get() == 0


def test_beat_schedule_syncs_every_due_account(accounts, eager_tasks):
    entry = celery_app.conf.beat_schedule["campaigns-sync-due-accounts"]
    assert entry["task"] == "campaigns.sync_due_accounts"
    started = celery_app.tasks[entry["task"]].apply().get()
    assert started == len(accounts)
    runs = SyncRun.objects.all()
    assert {run.status for run in runs} == {"succeeded"}
    for account in accounts.values():
        account.refresh_from_db()
        assert account.last_synced_at is not None
    # Nothing is due again until the interval passes.
    assert celery_app.tasks[entry["task"]].apply().get() == 0


@pytest.mark.parametrize("platform", ["google", "meta"])
def test_rows_match_the_platform_and_a_second_sync_changes_nothing(accounts, platform):
    account = next(a for (p, _), a in accounts.items() if p == platform)
    assert account.data_from is None  # never synced: every day is "no data"
    run = services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False))
    assert run.status == "succeeded"
    account.refresh_from_db()
    assert account.data_from == run.date_from

    adapter = get_platform(platform)
    listed = {c.external_id: c for c in adapter.list_campaigns(account)}
    stored = {c.external_id: c for c in Campaign.objects.filter(account=account)}
    assert set(stored) == set(listed)
    for external_id, info in listed.items():
        assert stored[external_id].daily_budget_micros == info.daily_budget_micros
        assert stored[external_id].status == info.status
    rows = list(adapter.iter_daily_metrics(account, run.date_from, run.date_to))
    assert run.metric_rows_synced == len(rows) == DailyMetric.objects.filter(campaign__account=account).count()
    sample = rows[len(rows) // 2]
    stored_row = DailyMetric.objects.get(campaign__external_id=sample.campaign_external_id, date=sample.date)
    assert stored_row.cost_micros == sample.cost_micros and stored_row.clicks == sample.clicks

    before = _snapshot(account)
    services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False))
    assert _snapshot(account) == before


def test_budget_changed_on_the_platform_appears_after_the_next_sync(accounts):
    account = next(a for (p, _), a in accounts.items() if p == "google")
    services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False))
    campaign = Campaign.objects.filter(account=account, status="enabled", budget_is_shared=False).first()
    adapter = get_platform("google")
    info = adapter.get_campaign(account, campaign.external_id)
    new_budget = info.daily_budget_micros + 7_000_000
    adapter.update_daily_budget(account, info, new_budget)

    services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False))
    campaign.refresh_from_db()
    assert campaign.daily_budget_micros == new_budget


def test_quota_fault_delays_the_sync_by_the_platforms_delay_then_succeeds(accounts, sandbox):
    account = next(a for (p, _), a in accounts.items() if p == "google")
    run = services.sync_run_create(account=account, enqueue=False)
    sandbox.google.state.faults.quota = 1.0
    sandbox.google.state.faults.quota_retry_seconds = 30
    # As a worker runs it (not eagerly): the retry is published with its countdown.
    tasks.sync_account.push_request(args=[run.pk], kwargs={}, retries=0, called_directly=False, is_eager=False)
    try:
        with pytest.raises(Retry) as retry:
            tasks.sync_account.run(run.pk)
    finally:
        tasks.sync_account.pop_request()
    assert 30 <= retry.value.when <= 30 + 5  # the announced delay, plus jitter
    run.refresh_from_db()
    assert run.status == "queued" and run.error_class == "RateLimitedError"
    assert run.next_attempt_at is not None
    assert services.stale_queued_runs() == []  # waiting for its retry, not lost

    sandbox.google.state.faults.quota = 0.0
    tasks.sync_account.run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 2


def test_auth_fault_flags_the_account_and_is_not_retried(accounts, sandbox):
    account = next(a for (p, _), a in accounts.items() if p == "meta")
    run = services.sync_run_create(account=account, enqueue=False)
    sandbox.meta.state.faults.auth = 1.0
    tasks.sync_account.run(run.pk)  # no Retry raised
    run.refresh_from_db()
    account.refresh_from_db()
    assert run.status == "failed" and run.error_class == "AuthError"
    assert account.needs_attention and "AuthError" in account.attention_reason
    assert account not in services.due_accounts(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    # Fixed at the platform: a manual sync succeeds and lifts the flag, so scheduled syncs resume.
    sandbox.meta.state.faults.reset()
    again = services.campaign_sync(run=services.sync_run_create(account=account, trigger="manual", enqueue=False))
    account.refresh_from_db()
    assert again.status == "succeeded" and not account.needs_attention and account.attention_reason == ""
    assert account in services.due_accounts(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))


def test_a_failed_run_leaves_the_last_good_data(accounts, sandbox):
    account = next(a for (p, _), a in accounts.items() if p == "meta")
    services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False))
    before = _snapshot(account)
    sandbox.meta.state.faults.unavailable = 1.0
    run = services.sync_run_create(account=account, enqueue=False)
    with pytest.raises(Exception):  # noqa: B017 - the platform's transient error, re-raised for the task
        services.campaign_sync(run=run)
    assert _snapshot(account) == before


def test_one_sync_per_account_at_a_time(accounts):
    account = next(a for (p, _), a in accounts.items() if p == "google")
    first = services.sync_run_create(account=account, enqueue=False)
    AdAccount.objects.filter(pk=account.pk).update(
        sync_lease_run_id=first.pk, sync_lease_taken_at=dt.datetime.now(dt.UTC)
    )
    second = services.sync_run_create(account=account, enqueue=False)
    with pytest.raises(services.SyncAlreadyRunning):
        services.campaign_sync(run=second)
    second.refresh_from_db()
    assert second.status == "skipped"


def test_a_second_delivery_of_a_running_sync_does_not_sync_it_again(accounts):
    account = next(a for (p, _), a in accounts.items() if p == "google")
    run = services.sync_run_create(account=account, enqueue=False)
    # The first delivery holds the lease and works; the broker hands the same message out again.
    AdAccount.objects.filter(pk=account.pk).update(
        sync_lease_run_id=run.pk, sync_lease_taken_at=dt.datetime.now(dt.UTC)
    )
    SyncRun.objects.filter(pk=run.pk).update(status="running")
    run.refresh_from_db()
    with pytest.raises(services.SyncAlreadyRunning):
        services.campaign_sync(run=run)
    run.refresh_from_db()
    assert run.status == "running" and run.attempts == 0  # left to the delivery that holds the lease
    assert run.metric_rows_synced == 0 and not DailyMetric.objects.filter(campaign__account=account).exists()


def test_sync_by_hand_waits_out_a_rate_limit_and_gives_up_cleanly(accounts, sandbox):
    from io import StringIO

    from django.core.management import CommandError, call_command

    account = next(a for (p, _), a in accounts.items() if p == "google")
    sandbox.google.state.faults.quota = 1.0
    sandbox.google.state.faults.quota_retry_seconds = 1
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 syncs failed"):
        call_command("sync_accounts", "--account", str(account.pk), stdout=out, stderr=StringIO())
    assert out.getvalue().count("trying again in 1s") == 3
    # Given up for good, not left queued for a worker to finish behind the operator's back.
    run = SyncRun.objects.get(account=account)
    assert run.status == "failed" and run.next_attempt_at is None and services.stale_queued_runs() == []

    # Once the limit is lifted, the same command succeeds.
    sandbox.google.state.faults.quota = 0.0
    call_command("sync_accounts", "--account", str(account.pk), stdout=StringIO())
    assert SyncRun.objects.filter(account=account).latest("pk").status == "succeeded"
