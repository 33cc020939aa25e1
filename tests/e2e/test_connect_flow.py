"""Connecting from an empty database, in a real browser: an operator with nothing but the sandbox
connects two Google logins and a Meta login through the platforms' consent pages, picks accounts,
and sees 90 days of sandbox data after the first backfill; revoking a login at the sandbox flags
its connection, raises the alert and offers Reconnect. Screenshots land in var/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_missing, screenshot

_missing = browser_missing()
if _missing:
    pytest.skip(f"Browser tests skipped: {_missing}", allow_module_level=True)

from adsplatform.celery import app as celery_app  # noqa: E402
from campaigns import backfill  # noqa: E402
from campaigns.models import AdAccount, DailyMetric  # noqa: E402
from campaigns.services import account_today  # noqa: E402
from connections import services as connection_services  # noqa: E402
from connections.models import Connection  # noqa: E402
from optimization.models import Alert  # noqa: E402
from platforms.sandbox.meta import oauth as meta_oauth  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tasks_in_process(settings) -> Iterator[None]:
    """Tasks run where they are sent (the live server's thread, or the test's), on an in-memory
    broker, as a worker would run them."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates, celery_app.conf.broker_url)
    settings.CELERY_BROKER_URL = "memory://"
    celery_app.conf.broker_url = "memory://"
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates, celery_app.conf.broker_url = previous
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture(autouse=True)
def _fresh_logins(sandbox):
    yield
    sandbox.google.state.oauth_logins.reset()
    meta_oauth.logins_of(sandbox.meta.state).reset()


def _connect_in_browser(page, button: str, choice: str, shot: str) -> None:
    page.goto("/admin/connections/connection/")
    page.click(button)
    page.wait_for_selector("#allow")  # the platform's own page (the sandbox's)
    page.check(choice)
    screenshot(page, f"{shot}-consent")
    page.click("#allow")
    page.wait_for_url(re.compile(r".*/connect/\d+/accounts/$"))
    screenshot(page, f"{shot}-pick-accounts")
    page.click("#pick-accounts")
    page.wait_for_url(re.compile(r".*/admin/campaigns/syncrun/.*"))


def _run_backfill() -> None:
    """What beat does every minute, until every new account holds its 90 days."""
    for _ in range(30):
        if not backfill.backfill_enqueue_due():
            return
    raise AssertionError("the backfill did not finish")


def test_connect_two_google_logins_and_meta_from_an_empty_database(
    page, live_server, sandbox, tasks_in_process, staff_user
):
    assert not AdAccount.objects.exists() and not Connection.objects.exists()
    page.goto("/admin/login/?next=/admin/connections/connection/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#connect-google")
    screenshot(page, "connections-empty")

    _connect_in_browser(page, "#connect-google", "input[value='agency@ibvi.example']", "connect-google")
    # The sync page shows how far each new account's first backfill has come (its newest chunk is read).
    page.wait_for_selector("#backfills-heading")
    screenshot(page, "sync-page-backfill-progress")
    rows = page.locator("[data-backfill]")
    assert rows.count() >= 1
    first_row = rows.first.inner_text()
    assert re.search(r"\d+ of 90 days \(in progress\)", first_row), first_row
    assert rows.first.locator("progress").get_attribute("max") == "90"
    _connect_in_browser(page, "#connect-google", "input[value='ops@ibvi.example']", "connect-google-second-login")
    _connect_in_browser(page, "#connect-meta", "input[value='10000000000002']", "connect-meta")
    _run_backfill()

    accounts = {a.external_id: a for a in AdAccount.objects.select_related("connection")}
    assert set(accounts) == {"3456789012", "1234567890", "2345678901", "300000000000002", "300000000000003"}
    logins = {a.connection_id for a in accounts.values() if a.platform == "google"}
    assert len(logins) == 2  # the second login's accounts beside the first's, each on its own connection
    for account in accounts.values():
        today = account_today(account)
        days = DailyMetric.objects.filter(campaign__account=account).dates("date", "day")
        assert days and days.first() <= today - timedelta(days=85), account.external_id
        assert backfill.backfill_status([account])[account.pk].done

    # The dashboard over 90 days shows every connected account's numbers.
    latest = max(account_today(a) for a in accounts.values())
    page.goto(f"/admin/?date_from={latest - timedelta(days=89)}&date_to={latest}")
    page.wait_for_selector("#content")
    screenshot(page, "dashboard-90-days-after-connect")
    html = page.content()
    assert "Choose at most" not in html
    assert 'data-tile="coverage"' not in html and ">No data<" not in html  # every day of the 90 was read
    for currency in ("AUD", "USD", "GBP"):  # every connected account's spend, by currency
        assert currency in html

    page.goto("/admin/campaigns/syncrun/")
    assert page.locator("#backfills-heading").count() == 0  # every backfill is done

    page.goto("/admin/connections/connection/")
    screenshot(page, "connections-list")
    for label in ("Google Ads login (via 1000000002)", "Google Ads login (via 1000000001)", "Bo Agency"):
        assert page.locator(f"#result_list >> text={label}").count() == 1

    # Revoked at the platform: the next health check flags it, pauses its syncs, opens the alert.
    agency = Connection.objects.get(label__contains="1000000002")
    revoked = requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/revoke", data={"token": agency.refresh_token}, timeout=5
    )
    assert revoked.status_code == 200
    assert connection_services.connections_check_all().flagged == 1
    assert Alert.objects.filter(subject=f"connection:{agency.pk}", resolved_at__isnull=True).exists()
    page.goto("/admin/connections/connection/")
    assert page.locator("#result_list >> text=Needs reconnecting").count() == 1
    page.goto(f"/admin/connections/connection/{agency.pk}/change/")
    page.wait_for_selector("#reconnect")
    screenshot(page, "connection-needs-reconnect")
    assert "invalid_grant" in page.content()
    page.goto("/admin/optimization/alert/")
    assert page.locator("#result_list >> text=Google Ads login (via 1000000002)").count() == 1
    screenshot(page, "connection-alert")

    # Reconnect in the browser: the same connection, fresh credentials, syncs resume.
    page.goto(f"/admin/connections/connection/{agency.pk}/change/")
    page.click("#reconnect")
    page.wait_for_selector("#allow")
    page.check("input[value='agency@ibvi.example']")
    page.click("#allow")
    page.wait_for_url(re.compile(rf".*/connect/{agency.pk}/accounts/$"))
    agency.refresh_from_db()
    assert agency.status == "active" and agency.credential_version == 2
    assert not AdAccount.objects.get(external_id="3456789012").needs_attention
