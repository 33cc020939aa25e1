"""A sandbox that was not up when `make run` started is found later: beat tries discovery again."""

from __future__ import annotations

import pytest

from adsplatform.celery import app as celery_app
from campaigns import tasks
from campaigns.models import AdAccount

pytestmark = pytest.mark.django_db


def test_beat_tries_discovery_again_every_two_minutes():
    entry = celery_app.conf.beat_schedule["campaigns-discover-sandbox-accounts"]
    assert entry["task"] == tasks.discover_sandbox_accounts.name
    assert entry["schedule"] <= 120


def test_the_platform_unreachable_at_start_is_discovered_once_it_answers(sandbox):
    sandbox.meta.state.faults.unavailable = 1.0  # Meta's sandbox is not answering yet
    found_first = tasks.discover_sandbox_accounts()
    platforms = set(AdAccount.objects.values_list("platform", flat=True))
    assert platforms == {"google"} and found_first > 0

    sandbox.meta.state.faults.unavailable = 0.0  # now it is
    assert tasks.discover_sandbox_accounts() > 0
    assert set(AdAccount.objects.values_list("platform", flat=True)) == {"google", "meta"}
    accounts = AdAccount.objects.count()
    assert tasks.discover_sandbox_accounts() == 0  # nothing missing: no call, nothing new
    assert AdAccount.objects.count() == accounts
