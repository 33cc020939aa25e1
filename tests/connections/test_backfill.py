"""The first backfill's chunks: newest first, back to the target day, a few at a time, at a low
priority, and nothing more once the account holds its days."""

from __future__ import annotations

import datetime as dt

import pytest
from celery.signals import before_task_publish

from adsplatform.celery import app as celery_app
from campaigns import backfill
from campaigns.models import SyncRun
from campaigns.services import account_data_read_from
from tests.campaigns.factories import AdAccountFactory

pytestmark = pytest.mark.django_db


def _succeed(run: SyncRun) -> None:
    """What a successful sync of the chunk records: the run, and the days the account now holds."""
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.SUCCEEDED)
    account_data_read_from(account_id=run.account_id, day=run.date_from)


def test_chunks_walk_back_from_today_to_the_target_day(settings, django_capture_on_commit_callbacks):
    settings.INITIAL_BACKFILL_DAYS, settings.BACKFILL_CHUNK_DAYS = 90, 30
    account = AdAccountFactory(time_zone="UTC")
    windows = []
    for _ in range(5):
        with django_capture_on_commit_callbacks():  # published on commit; not sent here
            backfill.backfill_enqueue_due(account_ids=[account.pk])
        run = SyncRun.objects.filter(account=account, status="queued").first()
        if run is None:
            break
        windows.append((run.date_from, run.date_to))
        _succeed(run)
    today = dt.date(2026, 6, 17)
    assert windows == [
        (today - dt.timedelta(days=29), today),
        (today - dt.timedelta(days=59), today - dt.timedelta(days=30)),
        (today - dt.timedelta(days=89), today - dt.timedelta(days=60)),
    ]
    assert {r.trigger for r in SyncRun.objects.all()} == {"backfill"}
    assert str(backfill.backfill_status([account])[account.pk]) == "90 of 90 days (done)"


def test_the_account_s_own_days_win_and_zero_means_none(settings, django_capture_on_commit_callbacks):
    settings.INITIAL_BACKFILL_DAYS = 90
    short = AdAccountFactory(initial_backfill_days=10, time_zone="UTC")
    none = AdAccountFactory(initial_backfill_days=0)
    with django_capture_on_commit_callbacks():
        assert backfill.backfill_enqueue_due() == 1
    run = SyncRun.objects.get()
    assert run.account == short and (run.date_to - run.date_from).days == 9
    assert not SyncRun.objects.filter(account=none).exists()


def test_at_most_a_few_chunks_in_flight_at_a_low_priority(settings, django_capture_on_commit_callbacks):
    settings.BACKFILL_MAX_CONCURRENT = 2
    accounts = [AdAccountFactory() for _ in range(4)]
    sent = []

    def seen(sender=None, headers=None, properties=None, **_):
        sent.append((sender, (properties or {}).get("priority")))

    before_task_publish.connect(seen)
    try:
        with django_capture_on_commit_callbacks(execute=True):  # published to the real broker
            assert backfill.backfill_enqueue_due() == 2
    finally:
        before_task_publish.disconnect(seen)
        celery_app.control.purge()  # this test's own queue (its Redis database): no worker takes them
    assert backfill.backfill_enqueue_due() == 0  # two in flight: the others wait their turn
    assert sent == [("campaigns.sync_account", backfill.BACKFILL_PRIORITY)] * 2
    assert backfill.BACKFILL_PRIORITY > settings.CELERY_TASK_DEFAULT_PRIORITY  # Redis serves lower numbers first
    busy = {run.account_id for run in SyncRun.objects.all()}
    assert busy == {accounts[0].pk, accounts[1].pk}


def test_paused_and_inactive_accounts_are_not_backfilled(django_capture_on_commit_callbacks):
    AdAccountFactory(needs_attention=True)
    AdAccountFactory(is_active=False)
    with django_capture_on_commit_callbacks():
        assert backfill.backfill_enqueue_due() == 0


def test_the_sync_page_shows_each_visible_account_s_backfill(client, settings, today):
    from django.contrib.auth import get_user_model

    from campaigns.access import account_access_grant
    from campaigns.services import account_data_read_from

    settings.INITIAL_BACKFILL_DAYS = 90
    mine = AdAccountFactory(name="Mine", time_zone="UTC")
    AdAccountFactory(name="Theirs", time_zone="UTC")  # no grant: not the viewer's
    done = AdAccountFactory(name="Done", time_zone="UTC")
    account_data_read_from(account_id=mine.pk, day=today - dt.timedelta(days=29))
    account_data_read_from(account_id=done.pk, day=today - dt.timedelta(days=89))
    viewer = get_user_model().objects.create_user("viewer-of-two", password="x", is_staff=True)
    account_access_grant(user=viewer, account=mine, role="viewer")
    account_access_grant(user=viewer, account=done, role="viewer")
    client.force_login(viewer)
    html = client.get("/admin/campaigns/syncrun/").content.decode()
    assert "First backfill in progress" in html
    assert "Mine" in html and "30 of 90 days (in progress)" in html and 'max="90" value="30"' in html
    assert "Theirs" not in html  # another account's backfill is not shown
    assert f'data-backfill="{done.pk}"' not in html  # a finished backfill leaves the list
