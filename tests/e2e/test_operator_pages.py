"""The operator's back office in a real browser: log in, read the dashboard, change a budget,
replay a webhook event, approve an optimizer proposal. Data comes from the sandbox through the
real sync; screenshots of each page land in var/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_missing, screenshot

_missing = browser_missing()
if _missing:
    pytest.skip(f"Browser tests skipped: {_missing}", allow_module_level=True)

from adsplatform.celery import app as celery_app  # noqa: E402
from campaigns.models import AdAccount, Campaign, SyncRun  # noqa: E402
from campaigns.services import account_discover, campaign_sync, sync_run_create  # noqa: E402
from conversions.models import Conversion, ConversionAction  # noqa: E402
from optimization.models import Alert, OptimizationRun  # noqa: E402
from webhooks import services as webhook_services  # noqa: E402
from webhooks.models import Lead, WebhookEvent, WebhookSource  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tasks_in_process(settings) -> Iterator[None]:
    """Tasks run where they are sent (the live server's thread), on an in-memory broker, as a
    worker would run them; nothing is published to a real queue."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates, celery_app.conf.broker_url)
    settings.CELERY_BROKER_URL = "memory://"
    celery_app.conf.broker_url = "memory://"
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    webhook_services.broker_circuit.reset()
    yield
    webhook_services.background_publisher.join()
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates, celery_app.conf.broker_url = previous
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@dataclass
class BackOffice:
    accounts: list[AdAccount]
    campaign: Campaign  # an enabled campaign with its own daily budget
    proposal: OptimizationRun
    failed_event: WebhookEvent


def _lead_body(n: int) -> str:
    return json.dumps({"lead_id": f"e2e-{n:04d}", "first_name": "Ada", "email": f"ada{n}@example.org"})


@pytest.fixture
def back_office(sandbox, tasks_in_process, staff_user) -> BackOffice:
    """The sandbox's accounts discovered and synced for real, plus the rows the other apps keep:
    leads over the last days, finished conversion uploads, an open alert, an optimizer proposal
    and a webhook event that failed."""
    accounts = account_discover()
    for account in accounts:
        campaign_sync(run=sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL, enqueue=False))
    campaign = (
        Campaign.objects.filter(
            account__platform="google", status="enabled", budget_is_shared=False, daily_budget_micros__gt=0
        )
        .select_related("account")
        .order_by("external_id")
        .first()
    )
    other = (
        Campaign.objects.filter(status="enabled", budget_is_shared=False, daily_budget_micros__gt=0)
        .exclude(pk=campaign.pk)
        .order_by("external_id")
        .first()
    )
    now = timezone.now()
    source = WebhookSource.objects.create(name="make", secret="e2e-relay-secret")
    for days_ago, priority in [
        (0, "urgent"),
        (0, "high"),
        (1, "normal"),
        (2, "urgent"),
        (3, "low"),
        (5, "normal"),
        (8, "high"),
    ]:
        Lead.objects.create(
            source=source, priority=priority, received_at=now - timedelta(days=days_ago), campaign=campaign
        )
    action = ConversionAction.objects.create(account=campaign.account, external_id="987654321", name="Purchase")
    for n, (days_ago, status) in enumerate(
        [(0, "uploaded"), (0, "uploaded"), (1, "uploaded"), (1, "rejected"), (2, "uploaded"), (4, "failed")]
    ):
        finished = now - timedelta(days=days_ago)
        conversion = Conversion.objects.create(
            platform="google",
            account=campaign.account,
            action=action,
            dedupe_key=f"e2e-{n}",
            order_id=f"order-{n}",
            occurred_at=finished,
            payload={},
            status=status,
        )
        Conversion.objects.filter(pk=conversion.pk).update(updated_at=finished)
    Alert.objects.create(
        kind=Alert.Kind.API_FAILURES,
        subject="platform:meta",
        subject_label="Meta",
        severity=Alert.Severity.WARNING,
        value=0.2,
        threshold=0.1,
        message="20% of Meta calls failed in the last 15 minutes.",
        opened_at=now,
        last_seen_at=now,
    )
    proposal = OptimizationRun.objects.create(
        campaign=other,
        old_budget_micros=other.daily_budget_micros,
        new_budget_micros=other.daily_budget_micros + 1_000_000,
        reason="Pacing: under-spending against the monthly cap.",
        source=OptimizationRun.Source.OPTIMIZER,
        status=OptimizationRun.Status.PROPOSED,
        proposal_kind="pacing",
    )
    failed_event = WebhookEvent.objects.create(
        source=source,
        dedupe_key="lead:e2e-replay",
        raw_body=_lead_body(99),
        status=WebhookEvent.Status.FAILED,
        attempts=6,
        last_error="RuntimeError: the CRM was down",
        received_at=now - timedelta(minutes=30),
    )
    return BackOffice(accounts, campaign, proposal, failed_event)


def log_in(page) -> None:
    """Through the login form, with the keyboard: labelled fields, Enter submits."""
    page.goto("/admin/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/admin/$"))


def run_action(page, action_label: str, row_ids: list[object]) -> None:
    """Tick rows and run an admin action with the keyboard only (Space ticks, Enter runs)."""
    for row_id in row_ids:
        page.locator(f'input.action-select[value="{row_id}"]').press("Space")
    page.get_by_label("Action:").select_option(label=action_label)
    page.get_by_role("button", name="Go").press("Enter")
    page.wait_for_load_state()


def test_log_in_and_see_every_chart_drawn(page, back_office):
    log_in(page)
    assert page.get_by_role("heading", name="Operator dashboard").is_visible()
    charts = page.locator("svg.ads-chart")
    chart_ids = charts.evaluate_all("nodes => nodes.map(n => n.id)")
    assert {"chart-pacing", "chart-conversions", "chart-leads", "chart-sync-lag"} <= set(chart_ids)
    assert any(chart_id.startswith("chart-spend-") for chart_id in chart_ids)
    for chart_id in chart_ids:
        marks = page.locator(f"#{chart_id} .mark").count()
        assert marks > 0, f"{chart_id} draws nothing"
        assert page.locator(f"#{chart_id} > title").text_content()
    assert page.locator("[data-tile=leads-urgent]").text_content() == "1"
    open_alerts = Alert.objects.filter(resolved_at__isnull=True).count()  # the sync's budget alerts too
    assert page.locator("[data-tile=open-alerts]").text_content() == str(open_alerts)
    screenshot(page, "dashboard")
    # Each chart has its table, one keypress away.
    first_table = page.locator("details summary").first
    first_table.focus()
    first_table.press("Enter")
    assert page.locator("details[open] table tbody tr").count() > 0

    # The filter narrows everything to one account.
    page.get_by_label("Account:", exact=True).select_option(str(back_office.campaign.account_id))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(rf"account={back_office.campaign.account_id}"))
    assert page.locator("svg.ads-chart").count() >= 5
    assert back_office.campaign.account.name in page.locator(".ads-caption").text_content()


def test_change_a_budget_and_see_the_change_record(page, back_office):
    campaign = back_office.campaign
    log_in(page)
    page.goto("/admin/campaigns/campaign/?status__exact=enabled")
    page.locator("#toggle-nav-sidebar").click()  # room for every column in the screenshot
    page.set_viewport_size({"width": 1720, "height": 1000})
    assert page.locator(".ads-sparkline svg").count() > 0
    screenshot(page, "campaign-list")

    page.locator(f'#result_list a[href*="/{campaign.pk}/change/"]').click()
    page.wait_for_url(re.compile(rf"/{campaign.pk}/change/"))
    assert page.locator(".field-budget_pacing").get_by_text("Spend this month").is_visible()
    screenshot(page, "campaign-change")
    page.get_by_role("link", name="Change daily budget").click()
    new_budget = (campaign.daily_budget_micros + 2_500_000) / 1_000_000
    page.get_by_label("New daily budget").fill(f"{new_budget:.2f}")
    page.get_by_label("Reason").fill("Strong CPA this week; give it room.")
    screenshot(page, "budget-form")
    page.get_by_role("button", name="Change budget").click()

    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{campaign.pk}/change/"))
    assert "is being pushed" in page.locator("ul.messagelist").text_content()
    run = OptimizationRun.objects.get(campaign=campaign, source=OptimizationRun.Source.STAFF)
    assert run.status == OptimizationRun.Status.APPLIED  # pushed to the sandbox in the live server's thread
    page.reload()
    history = page.locator(".field-budget_pacing .ads-changes")
    assert f"{new_budget:,.2f} USD" in history.text_content()
    assert "Applied" in history.text_content()
    screenshot(page, "budget-changed")


def test_replay_a_failed_webhook_event(page, back_office):
    log_in(page)
    page.goto("/admin/webhooks/webhookevent/?status__exact=failed")
    run_action(page, "Replay selected events (failed or stuck)", [back_office.failed_event.pk])
    assert "1 event(s) queued again" in page.locator("ul.messagelist").text_content()
    back_office.failed_event.refresh_from_db()
    assert back_office.failed_event.status != WebhookEvent.Status.FAILED
    screenshot(page, "webhook-replayed")


def test_approve_an_optimizer_proposal(page, back_office):
    log_in(page)
    page.goto("/admin/optimization/optimizationrun/?status__exact=proposed")
    screenshot(page, "proposals")
    run_action(page, "Approve selected proposals (push them)", [back_office.proposal.pk])
    assert "Approved 1 proposal(s)" in page.locator("ul.messagelist").text_content()
    back_office.proposal.refresh_from_db()
    assert back_office.proposal.status == OptimizationRun.Status.APPLIED
    screenshot(page, "proposal-approved")


def test_a_running_sync_shows_progress_and_refreshes(page, back_office):
    account = back_office.accounts[0]
    run = SyncRun.objects.create(
        account=account,
        trigger=SyncRun.Trigger.MANUAL,
        status=SyncRun.Status.RUNNING,
        started_at=timezone.now() - timedelta(seconds=42),
        campaigns_synced=12,
        metric_rows_synced=1080,
        progress="metrics: 1,080 rows so far",
    )
    log_in(page)
    page.goto(f"/admin/campaigns/syncrun/{run.pk}/change/")
    assert page.locator("[data-progress=rows]").text_content() == "1,080"
    assert page.get_by_label("Refresh every 5 seconds until it finishes").is_checked()
    screenshot(page, "sync-progress")
    # When the run ends, the page notices by itself.
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.SUCCEEDED, finished_at=timezone.now(), metric_rows_synced=2000
    )
    # A locator wait, not wait_for_function: the page's Content-Security-Policy forbids eval.
    from playwright.sync_api import expect

    expect(page.locator("[data-progress=rows]")).to_have_text("2,000", timeout=12_000)
    assert page.locator("#ads-auto-refresh").count() == 0


def test_a_viewer_of_one_account_sees_only_it_and_can_change_nothing(page, back_office, django_user_model):
    """A freelancer given one account's view: the dashboard, the campaign list and the budget
    form know nothing of the other accounts, and the budget form is refused."""
    from campaigns.access import VIEWER, account_access_grant

    mine = back_office.campaign.account
    others = [a for a in back_office.accounts if a.pk != mine.pk]
    viewer = django_user_model.objects.create_user("freelancer", password=PASSWORD, is_staff=True)
    account_access_grant(user=viewer, account=mine, role=VIEWER)

    page.goto("/admin/")
    page.get_by_label("Username").fill("freelancer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/admin/$"))
    choices = page.get_by_label("Account:", exact=True).locator("option").all_text_contents()
    assert any(mine.name in choice for choice in choices)
    assert not any(other.name in choice for other in others for choice in choices)

    page.goto("/admin/campaigns/campaign/")
    listed = set(page.locator("#result_list tbody tr th a").all_text_contents())
    assert back_office.campaign.name in listed
    assert listed <= set(Campaign.objects.filter(account=mine).values_list("name", flat=True))
    screenshot(page, "viewer-campaigns")

    response = page.goto(f"/admin/campaigns/campaign/{back_office.campaign.pk}/budget/")
    assert response.status == 403
    assert not OptimizationRun.objects.filter(requested_by=viewer).exists()
