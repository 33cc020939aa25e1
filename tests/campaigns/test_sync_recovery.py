"""A sync whose worker or database went away is settled, and the account syncs again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import AdAccount, SyncRun
from tests.campaigns.factories import AdAccountFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


def _running(account: AdAccount, lease_age: timedelta) -> SyncRun:
    run = SyncRunFactory(account=account, running=True)
    AdAccount.objects.filter(pk=account.pk).update(
        sync_lease_run_id=run.pk, sync_lease_taken_at=timezone.now() - lease_age
    )
    return run


def test_an_abandoned_run_is_failed_and_frees_the_account():
    account = AdAccountFactory()
    run = _running(account, lease_age=timedelta(seconds=services.SYNC_LEASE_SECONDS + 60))
    assert services.sync_runs_settle_abandoned() == 1
    run.refresh_from_db()
    account.refresh_from_db()
    assert run.status == "failed" and run.error_class == "WorkerLost"
    assert account.sync_lease_run_id is None
    assert account in services.due_accounts()  # the next run can start


def test_a_run_that_renews_its_lease_is_left_alone():
    account = AdAccountFactory()
    run = _running(account, lease_age=timedelta(seconds=30))
    assert services.sync_runs_settle_abandoned() == 0
    run.refresh_from_db()
    assert run.status == "running"


def test_progress_renews_the_lease():
    account = AdAccountFactory()
    run = _running(account, lease_age=timedelta(minutes=9))
    services._save_progress(run, "100 metric rows so far", None)
    account.refresh_from_db()
    assert timezone.now() - account.sync_lease_taken_at < timedelta(seconds=5)
