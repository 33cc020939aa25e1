"""The routing rule editor in a real browser, under the Content-Security-Policy: rows added with
the button (a script file of our own), filled through their labels, saved as the usual conditions."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_missing, screenshot

_missing = browser_missing()
if _missing:
    pytest.skip(f"Browser tests skipped: {_missing}", allow_module_level=True)

from webhooks.models import RoutingRule  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_write_a_rule_without_json(page, staff_user):
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text  # reported below, with its URL
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.goto("/admin/login/?next=/admin/webhooks/routingrule/add/")
    page.get_by_label("Username").fill(staff_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/routingrule/add/$"))

    page.get_by_label("Name:").fill("Big budgets from the US")
    page.get_by_label("Position:").fill("5")
    page.get_by_label("Priority:").select_option("urgent")
    page.get_by_label("Condition 1: field").fill("answers.budget")
    page.get_by_label("Condition 1: operator").select_option(label="is at least")
    page.get_by_label("Condition 1: value").fill("5000")
    page.get_by_label("Condition 2: field").fill("phone_country")
    page.get_by_label("Condition 2: operator").select_option("in")
    page.get_by_label("Condition 2: value").fill("1, 44")
    # Both empty rows are used: the button adds a third, numbered and named after them.
    page.get_by_role("button", name="Add a condition").click()
    page.get_by_label("Condition 3: field").fill("email")
    page.get_by_label("Condition 3: operator").select_option("exists")
    screenshot(page, "routing-rule-editor")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r"/admin/webhooks/routingrule/$"))

    rule = RoutingRule.objects.get(name="Big budgets from the US")
    assert rule.conditions == [
        {"field": "answers.budget", "op": "gte", "value": 5000},
        {"field": "phone_country", "op": "in", "value": ["1", "44"]},
        {"field": "email", "op": "exists", "value": True},
    ]
    # A mistake is answered on the page, saying how to fix it.
    page.goto(f"/admin/webhooks/routingrule/{rule.pk}/change/")
    page.get_by_label("Condition 1: value").fill("lots")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "write a number such as 5000, not “lots”" in page.locator(".errorlist").first.text_content()
    assert problems == []
