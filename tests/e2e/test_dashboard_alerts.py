"""What needs attention, in a real browser: the dashboard lists the open alerts with links to what
they are about, platform outages, stuck budget pushes and a stalled worker; a viewer of one account
sees only that account's; and the admin's lists fit a 1440-px screen without scrolling sideways."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_missing, screenshot

_missing = browser_missing()
if _missing:
    pytest.skip(f"Browser tests skipped: {_missing}", allow_module_level=True)

from adsplatform import worker_liveness  # noqa: E402
from campaigns.access import VIEWER, account_access_grant  # noqa: E402
from campaigns.models import Campaign, SyncRun  # noqa: E402
from conversions.models import Conversion, ConversionAction, ServiceApiKey  # noqa: E402
from optimization.models import AccountBudgetSettings, Alert, OptimizationRun, PlatformCallRecord  # noqa: E402
from tests.campaigns.factories import AdAccountFactory, CampaignFactory, add_metrics  # noqa: E402
from webhooks.models import Destination, Lead, RoutingRule, WebhookEvent, WebhookSource  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDE = {"width": 1440, "height": 900}


@dataclass
class Trouble:
    mine: Campaign  # the campaign of the account the viewer is given
    theirs: Campaign  # another account's
    overspend: Alert  # about ``mine``
    pacing: Alert  # about ``theirs``
    platform_wide: Alert
    stuck: OptimizationRun
    event: WebhookEvent


def _alert(**fields) -> Alert:
    now = timezone.now()
    defaults = {"value": 2.0, "threshold": 1.1, "opened_at": now - timedelta(hours=3), "last_seen_at": now}
    return Alert.objects.create(**{**defaults, **fields})


@pytest.fixture
def stalled_worker(tmp_path, monkeypatch):
    """A worker heartbeat ten minutes old (the probe calls it stalled after a minute)."""
    path = tmp_path / "worker-heartbeat"
    worker_liveness.record(path, now=time.time() - 600)
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    return path


@pytest.fixture
def trouble(db, staff_user, stalled_worker) -> Trouble:
    """Two accounts with long, realistic names and something wrong with each; a platform failing;
    a push stuck; plus enough rows of every kind that the admin lists show real widths."""
    now = timezone.now()
    east = AdAccountFactory(
        platform="google", name="Northwind Outdoor Supply — East Coast", currency_code="USD", time_zone="UTC"
    )
    europe = AdAccountFactory(
        platform="meta", name="Contoso Home & Garden Europe", currency_code="EUR", time_zone="Europe/Berlin"
    )
    AccountBudgetSettings.objects.create(account=europe, monthly_budget_micros=900_000_000)
    mine = CampaignFactory(
        account=east, name="Search | Brand | Exact | US-East | Always on", daily_budget_micros=50_000_000
    )
    theirs = CampaignFactory(
        account=europe, platform="meta", name="Prospecting | Lookalike 2% | DE+AT", daily_budget_micros=30_000_000
    )
    for n in range(6):
        other = CampaignFactory(account=east if n % 2 else europe, name=f"Display | Remarketing | Cohort {n:02d}")
        add_metrics(other, days=20, end=timezone.localdate(), cost_micros=(n + 1) * 4_000_000)
    add_metrics(mine, days=17, end=timezone.localdate(), cost_micros=140_000_000)  # far over pace
    add_metrics(theirs, days=17, end=timezone.localdate(), cost_micros=200_000)  # far under
    SyncRun.objects.create(account=east, status="succeeded", campaigns_synced=7, metric_rows_synced=140)

    overspend = _alert(
        kind=Alert.Kind.BUDGET_OVERSPEND,
        subject=f"campaign:{mine.pk}",
        subject_label=mine.name,
        account=east,
        severity=Alert.Severity.CRITICAL,
        message=f"Daily overspend: “{mine.name}” spent 140.00 USD today, 280% of its 50.00 USD daily budget.",
    )
    pacing = _alert(
        kind=Alert.Kind.PACING_OVERSPEND,
        subject=f"campaign:{theirs.pk}",
        subject_label=theirs.name,
        account=europe,
        severity=Alert.Severity.WARNING,
        opened_at=now - timedelta(days=1),
        message=f"Monthly pacing overspend: “{theirs.name}” spent more than 17 days × its budget.",
    )
    platform_wide = _alert(
        kind=Alert.Kind.API_FAILURES,
        subject="platform:google",
        subject_label="Google Ads",
        severity=Alert.Severity.CRITICAL,
        value=0.6,
        threshold=0.05,
        opened_at=now - timedelta(minutes=12),
        open_notified_at=now - timedelta(minutes=11),
        message="Google Ads API failures: 12 of 20 calls failed in the last 15 minutes (60.0%, alert above 5%).",
    )
    for n in range(20):
        PlatformCallRecord.objects.create(
            platform="google",
            operation="GoogleAdsService.SearchStream",
            outcome="ok" if n < 8 else "transient",
            error_code="" if n < 8 else "UNAVAILABLE",
            seconds=0.2,
            called_at=now - timedelta(minutes=14) + timedelta(seconds=30 * n),
        )
    PlatformCallRecord.objects.create(
        platform="meta", operation="insights", outcome="ok", seconds=0.1, called_at=now - timedelta(minutes=2)
    )
    stuck = OptimizationRun.objects.create(
        campaign=mine,
        old_budget_micros=50_000_000,
        new_budget_micros=60_000_000,
        reason="Strong CPA this week.",
        source=OptimizationRun.Source.STAFF,
        status=OptimizationRun.Status.PENDING,
        push_attempts=4,
        next_attempt_at=now - timedelta(minutes=20),
        error_message="Google Ads is unavailable (UNAVAILABLE); retrying.",
    )

    source = WebhookSource.objects.create(name="make-com-production-scenario", secret="e2e-relay-secret-value")
    WebhookSource.objects.create(name="google-lead-form-main", kind="google_lead_form", secret="e2e-google-key-value")
    crm = Destination.objects.create(name="HubSpot CRM (production)", kind="crm", url="https://crm.example.org/hook")
    email = Destination.objects.create(
        name="Sales desk (email)", kind="email", recipients="sales@example.org, night-desk@example.org"
    )
    rule = RoutingRule.objects.create(
        name="Budget above 5,000 from the US goes to sales at once",
        position=1,
        priority="urgent",
        conditions=[{"field": "answers.budget", "op": "gte", "value": 5000}],
    )
    rule.destinations.set([crm, email])
    event = WebhookEvent.objects.create(
        source=source,
        dedupe_key="lead:7c9e6679-7425-40de-944b-e07fc1f90ae7-0001",
        raw_body='{"lead_id": "x"}',
        status=WebhookEvent.Status.RECEIVED,
        attempts=3,
        received_at=now - timedelta(minutes=9),
    )
    _alert(
        kind=Alert.Kind.WEBHOOK_DELAY,
        subject="webhooks:inbox",
        subject_label="Webhook inbox",
        severity=Alert.Severity.WARNING,
        value=540,
        threshold=300,
        opened_at=now - timedelta(minutes=4),
        details={"event_id": event.pk},
        message=f"Webhook delay: event #{event.pk} has waited 9.0 minutes unprocessed (alert above 5).",
    )
    for n in range(8):
        Lead.objects.create(
            source=source,
            full_name=f"Alexandra Konstantinopoulou-Whitfield {n}",
            email=f"alexandra.konstantinopoulou.whitfield{n}@example-enterprise-mail.org",
            phone=f"+1555010{n:04d}",
            priority=("urgent", "high", "normal", "low")[n % 4],
            campaign=mine if n % 2 else theirs,
            matched_rule=rule,
            received_at=now - timedelta(hours=n),
        )
    action = ConversionAction.objects.create(account=east, external_id="987654321", name="Purchase — web checkout")
    for n in range(8):
        Conversion.objects.create(
            platform="google",
            account=east,
            action=action,
            dedupe_key=f"e2e-wide-{n}",
            order_id=f"ORDER-2026-06-17-{n:06d}-WEB-CHECKOUT",
            event_name="purchase",
            value_micros=129_990_000,
            currency_code="USD",
            occurred_at=now - timedelta(hours=n),
            payload={},
            status=("uploaded", "pending", "failed", "rejected")[n % 4],
            attempts=n % 3,
            platform_code="CLICK_NOT_FOUND" if n % 4 == 3 else "",
            next_attempt_at=now + timedelta(minutes=5) if n % 4 == 1 else None,
            uploaded_at=now if n % 4 == 0 else None,
        )
    ServiceApiKey.objects.create(name="Checkout service (production)", prefix="sk_a1b2c3d4", key_hash="x" * 64)
    return Trouble(mine, theirs, overspend, pacing, platform_wide, stuck, event)


def log_in(page, username: str) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/admin/$"))


def test_the_dashboard_lists_open_alerts_with_links_to_what_they_are_about(page, trouble):
    page.set_viewport_size(WIDE)
    log_in(page, "operator")
    alerts = page.locator("[data-panel=alerts]")
    alerts.get_by_role("heading", name=re.compile("Open alerts")).wait_for()
    rows = alerts.locator("tbody tr")
    assert rows.count() == 4
    # Critical first, the longest open first among them.
    assert rows.nth(0).get_attribute("data-alert") == str(trouble.overspend.pk)
    assert rows.nth(1).get_attribute("data-alert") == str(trouble.platform_wide.pk)
    first = rows.nth(0)
    first_text = first.text_content().replace("\xa0", " ")
    assert "Budget overspend (today)" in first_text
    assert "Critical" in first_text
    assert "not sent yet" in first_text  # its notification has not gone out
    assert "2026-06-17 12:00 UTC" in first_text and "3 hours ago" in first_text
    assert "not sent yet" not in rows.nth(1).text_content()
    webhook_row = alerts.locator(f"tr:has(a[href$='/webhookevent/{trouble.event.pk}/change/'])")
    assert "Webhook delay" in webhook_row.text_content()
    platform_link = rows.nth(1).locator("[data-object-link]")
    assert platform_link.get_attribute("href").endswith("/admin/campaigns/adaccount/?platform__exact=google")

    # Platform outages, stuck pushes and the worker, beside the alerts.
    google = page.locator("[data-panel=platforms] [data-platform=google]")
    assert google.get_attribute("data-status") == "failing"
    assert "12 of 20 calls failed (60%)" in google.text_content()
    assert page.locator("[data-panel=platforms] [data-platform=meta]").get_attribute("data-status") == "ok"
    stuck = page.locator(f"[data-panel=stuck-pushes] [data-push='{trouble.stuck.pk}']")
    assert "4 attempts so far" in stuck.text_content()
    assert "budget 50.00 USD → 60.00 USD" in stuck.text_content()
    assert page.locator("[data-worker]").get_attribute("data-worker") == "stalled"
    assert "Stalled" in page.locator("[data-panel=worker]").text_content()
    # Pacing is coloured by how far off it is: far over and far under are not the same colour.
    tones = page.locator("#chart-pacing rect.mark").evaluate_all("bars => bars.map(b => b.dataset.tone)")
    assert "critical" in tones and tones.count("critical") < len(tones)
    screenshot(page, "dashboard-attention")

    # The link opens the campaign the alert is about.
    first.locator("[data-object-link]").click()
    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{trouble.mine.pk}/change/"))
    assert trouble.mine.name in page.locator("#content").text_content()


def test_a_viewer_of_one_account_does_not_see_another_accounts_alerts(page, trouble, django_user_model):
    viewer = django_user_model.objects.create_user("east-viewer", password=PASSWORD, is_staff=True)
    account_access_grant(user=viewer, account=trouble.mine.account, role=VIEWER)
    page.set_viewport_size(WIDE)
    log_in(page, "east-viewer")
    alerts = page.locator("[data-panel=alerts]")
    alerts.get_by_role("heading", name=re.compile("Open alerts")).wait_for()
    listed = alerts.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.alert)")
    assert listed == [str(trouble.overspend.pk)]
    assert alerts.locator("[data-count=alerts]").text_content() == "1"
    text = page.locator(".ads-dashboard").text_content()
    assert trouble.theirs.name not in text
    assert trouble.theirs.account.name not in text
    # Platform-wide matters (the platforms, the worker, the platform alert) are for people who
    # see every account; the stuck push is on the viewer's own campaign, so it shows.
    assert page.locator("[data-panel=platforms]").count() == 0
    assert page.locator("[data-panel=worker]").count() == 0
    assert page.locator(f"[data-push='{trouble.stuck.pk}']").count() == 1
    screenshot(page, "dashboard-viewer")


# Every changelist of webhooks and conversions, and the dashboard: none may scroll sideways at 1440 px.
WIDE_PAGES = [
    "/admin/",
    "/admin/webhooks/webhookevent/",
    "/admin/webhooks/lead/",
    "/admin/webhooks/routingrule/",
    "/admin/webhooks/webhooksource/",
    "/admin/webhooks/destination/",
    "/admin/conversions/conversion/",
    "/admin/conversions/conversionaction/",
    "/admin/conversions/serviceapikey/",
]
# Campaigns' and optimization's lists fit by the admin stylesheet alone (their columns are chosen
# in their own apps).
WIDE_PAGES_BY_CSS = [
    "/admin/campaigns/campaign/",
    "/admin/campaigns/adaccount/",
    "/admin/campaigns/dailymetric/",
    "/admin/campaigns/syncrun/",
    "/admin/campaigns/accountaccess/",
    "/admin/optimization/optimizationrun/",
    "/admin/optimization/alert/",
    "/admin/optimization/accountbudgetsettings/",
    "/admin/optimization/guardrailchange/",
]

# Boxes that scroll sideways inside the page (Django puts the result table in one): the document
# can be 1440 px wide while its list still scrolls.
SIDEWAYS_SCROLLERS = """() => [...document.querySelectorAll("body *")]
  .filter(el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX) && el.scrollWidth > el.clientWidth + 1)
  .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} ${el.scrollWidth} > ${el.clientWidth} px`)"""


def _sideways(page, paths: list[str]) -> dict[str, object]:
    """Each page at 1440 × 900 with the navigation sidebar open: what scrolls sideways, if anything."""
    page.set_viewport_size(WIDE)
    log_in(page, "operator")
    found = {}
    for path in paths:
        response = page.goto(path)
        assert response.status == 200, path
        name = path.removeprefix("/admin/").strip("/").replace("/", "-") or "dashboard"
        screenshot(page, f"wide-{name}")
        width = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate(SIDEWAYS_SCROLLERS)
        if width > WIDE["width"] or inner:
            found[path] = {"document": width, "inside": inner}
    return found


def test_admin_lists_fit_a_1440_px_screen(page, trouble):
    assert _sideways(page, WIDE_PAGES) == {}


def test_campaign_and_optimization_lists_fit_a_1440_px_screen(page, trouble):
    assert _sideways(page, WIDE_PAGES_BY_CSS) == {}
