"""An operator changes things on the platforms from admin, in a real browser: a budget and a pause,
each checked with the platform first (valid), submitted, seen pending, pushed by a Celery worker,
seen applied; and a check the platform refuses, which shows the refusal and writes nothing.

The accounts come from the sandbox through the real sync. Tasks go to an in-memory broker and
wait there, as they would in Redis with no worker running: the browser sees the change record
pending; then a real Celery worker (Celery's embedded test worker, in a thread of this process,
so it reaches the same test database and sandboxes) starts, takes the push and applies it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_missing, screenshot

_missing = browser_missing()
if _missing:
    pytest.skip(f"Browser tests skipped: {_missing}", allow_module_level=True)

from celery.contrib.testing.worker import start_worker  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from adsplatform.celery import app as celery_app  # noqa: E402
from campaigns.models import AdAccount, Campaign, SyncRun  # noqa: E402
from campaigns.services import account_discover, campaign_sync, sync_run_create  # noqa: E402
from optimization.models import OptimizationRun  # noqa: E402
from webhooks import services as webhook_services  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queued_tasks(settings, monkeypatch, tmp_path) -> Iterator[None]:
    """Tasks are published to an in-memory broker and wait for a worker (none runs until a test
    starts one with ``celery_worker``)."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    settings.CELERY_BROKER_URL = "memory://"
    celery_app.conf.broker_url = "memory://"
    celery_app.conf.task_always_eager = False
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    webhook_services.broker_circuit.reset()
    # The embedded worker's liveness heartbeat goes to a file of this test, and its stall
    # watchdog (which exits the process) stays off: this process is the test run.
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(tmp_path / "worker-heartbeat"))
    monkeypatch.setenv("WORKER_STALL_EXIT_SECONDS", "0")
    yield
    webhook_services.background_publisher.join()
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def celery_worker() -> Iterator[None]:
    """A real Celery worker consuming the default queue until the block ends."""
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=20, loglevel="WARNING"):
        yield


@pytest.fixture
def accounts(sandbox, queued_tasks, staff_user) -> list[AdAccount]:
    synced = account_discover()
    for account in synced:
        campaign_sync(run=sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL, enqueue=False))
    return synced


def google_campaign() -> Campaign:
    return (
        Campaign.objects.filter(
            account__platform="google", status="enabled", budget_is_shared=False, daily_budget_micros__gt=0
        )
        .select_related("account")
        .order_by("external_id")
        .first()
    )


def log_in(page) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/admin/$"))


def open_change_record(page, run: OptimizationRun) -> None:
    """From the object's page, through its change records, to the record itself."""
    page.locator(".inline-group").get_by_role("link", name=f"#{run.pk}", exact=True).click()
    page.wait_for_url(re.compile(rf"/admin/optimization/optimizationrun/{run.pk}/change/"))


def wait_until_applied(page, run: OptimizationRun, timeout: float = 30.0) -> None:
    """Reload the record's page until it says applied (the worker pushes in the background)."""
    deadline = time.monotonic() + timeout
    status = page.locator(".field-status .readonly")
    while "Applied" not in (status.text_content() or ""):
        assert time.monotonic() < deadline, f"still {status.text_content()!r}; error: {run.error_message!r}"
        time.sleep(0.5)
        page.reload()
    run.refresh_from_db()
    assert run.status == OptimizationRun.Status.APPLIED, run.error_message


def test_check_a_budget_with_google_change_it_and_see_it_applied(page, accounts):
    campaign = google_campaign()
    new_budget = (campaign.daily_budget_micros + 3_000_000) / 1_000_000
    log_in(page)
    page.goto(f"/admin/campaigns/campaign/?q={campaign.external_id}")
    page.get_by_role("link", name=campaign.name, exact=True).click()
    page.wait_for_url(re.compile(rf"/{campaign.pk}/change/"))
    page.get_by_role("link", name="Change daily budget").click()

    page.get_by_label("New daily budget").fill(f"{new_budget:.2f}")
    page.get_by_label("Reason").fill("Strong CPA this week; give it room.")
    page.get_by_role("button", name="Check with Google").click()
    verdict = page.locator("[data-verdict]")
    expect(verdict).to_have_attribute("data-verdict", "valid")
    expect(verdict).to_contain_text("Google Ads accepts this change")
    assert not OptimizationRun.objects.exists()  # a check writes nothing
    screenshot(page, "budget-checked")

    page.get_by_role("button", name="Change budget").click()
    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{campaign.pk}/change/"))
    expect(page.locator("ul.messagelist")).to_contain_text("is being pushed")
    run = OptimizationRun.objects.get(campaign=campaign)
    open_change_record(page, run)
    expect(page.locator(".field-status .readonly")).to_have_text("Pending (being pushed)")
    expect(page.locator(".field-new_value .readonly")).to_have_text(f"{new_budget:,.2f} USD")
    screenshot(page, "change-record-pending")

    with celery_worker():
        wait_until_applied(page, run)
    screenshot(page, "change-record-applied")

    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator(".field-budget .readonly")).to_have_text(f"{new_budget:,.2f} USD / day")


def test_check_a_pause_with_google_pause_and_see_it_applied(page, accounts):
    campaign = google_campaign()
    log_in(page)
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.get_by_role("link", name="Pause campaign").click()
    page.get_by_label("Reason").fill("Overspending today; stop it until the bids are fixed.")
    page.get_by_role("button", name="Check with Google").click()
    expect(page.locator("[data-verdict]")).to_have_attribute("data-verdict", "valid")
    assert not OptimizationRun.objects.exists()

    page.get_by_role("button", name="Pause campaign").click()
    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{campaign.pk}/change/"))
    expect(page.locator("ul.messagelist")).to_contain_text("enabled → paused")
    run = OptimizationRun.objects.get(campaign=campaign, kind=OptimizationRun.Kind.STATUS)
    open_change_record(page, run)
    expect(page.locator(".field-status .readonly")).to_have_text("Pending (being pushed)")

    with celery_worker():
        wait_until_applied(page, run)

    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator(".field-status .readonly")).to_have_text("Paused")
    expect(page.get_by_role("link", name="Enable campaign")).to_be_visible()
    screenshot(page, "campaign-paused")


def test_a_check_the_platform_refuses_shows_why_and_writes_nothing(page, accounts):
    lifetime = (
        Campaign.objects.filter(account__platform="meta", status="enabled", budget_micros__isnull=False)
        .exclude(budget_remaining_micros=None)
        .first()
    )
    spent = lifetime.budget_micros - lifetime.budget_remaining_micros
    log_in(page)
    page.goto(f"/admin/campaigns/campaign/{lifetime.pk}/change/")
    page.get_by_role("link", name="Change lifetime budget").click()
    page.get_by_label("New lifetime budget").fill(f"{(spent - 50_000_000) / 1_000_000:.2f}")
    page.get_by_label("Reason").fill("End the flight early")
    page.get_by_role("button", name="Check with Meta").click()

    verdict = page.locator("[data-verdict]")
    expect(verdict).to_have_attribute("data-verdict", "invalid")
    expect(verdict).to_contain_text("already spent")
    screenshot(page, "budget-check-refused")

    # Submitting it is refused the same way, on the field, and still writes nothing.
    page.get_by_role("button", name="Change budget").click()
    expect(page.locator(".field-lifetime_budget .errorlist")).to_be_visible()
    assert not OptimizationRun.objects.exists()
