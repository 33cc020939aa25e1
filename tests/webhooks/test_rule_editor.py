"""The routing rule editor in admin: conditions as field / operator / value rows, JSON still
accepted, bad input answered with a form error that says how to fix it, stored format unchanged."""

from __future__ import annotations

import json
import re

import pytest
from django.utils import timezone

from webhooks import services
from webhooks.forms import RoutingRuleForm
from webhooks.models import Destination, Lead, RoutingRule, WebhookSource

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/webhooks/routingrule/add/"


@pytest.fixture
def admin_client(client, staff_user):
    """The operator's browser session in admin."""
    client.force_login(staff_user)
    return client


@pytest.fixture
def crm(db) -> Destination:
    return Destination.objects.create(name="CRM", kind=Destination.Kind.CRM, url="https://crm.example.org/in")


def _base(**extra) -> dict[str, object]:
    return {"name": "Big budgets", "position": 5, "is_active": "on", "priority": "urgent", **extra}


def _rows(*rows: tuple[str, str, str], total: int | None = None, remove: tuple[int, ...] = ()) -> dict[str, str]:
    """The editor's rows as a browser posts them (conditions-N-field / -op / -value)."""
    data = {"conditions-TOTAL": str(total if total is not None else len(rows))}
    for index, (field, op, value) in enumerate(rows):
        data[f"conditions-{index}-field"] = field
        data[f"conditions-{index}-op"] = op
        data[f"conditions-{index}-value"] = value
        if index in remove:
            data[f"conditions-{index}-remove"] = "on"
    return data


def _errors(response) -> str:
    html = response.content.decode()
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, flags=re.S))


def test_the_editor_shows_rows_with_an_operator_menu_and_no_json_to_type(admin_client):
    html = admin_client.get(ADD_URL).content.decode()
    assert 'name="conditions-0-field"' in html and 'name="conditions-0-value"' in html
    assert '<option value="gte">is at least</option>' in html
    assert 'aria-label="Condition 1: operator"' in html
    assert '<datalist id="conditions-fields">' in html and '<option value="email_domain">' in html
    # The script that adds rows is a file of our own (no inline script under the CSP).
    assert "adsplatform/routing_conditions.js" in html
    assert "<script>" not in html


def test_saving_through_the_rows_stores_the_usual_conditions(admin_client, crm):
    response = admin_client.post(
        ADD_URL,
        {
            **_base(destinations=[crm.pk]),
            **_rows(
                ("answers.budget", "gte", "5,000"),
                ("phone_country", "in", "1, 44"),
                ("email", "exists", ""),
                ("email_domain", "not_equals", "example.org"),
                ("", "", ""),  # an empty row is ignored
            ),
            "conditions": "[]",  # the JSON box as the page showed it, untouched
        },
    )
    assert response.status_code == 302, _errors(response)
    rule = RoutingRule.objects.get()
    assert rule.conditions == [
        {"field": "answers.budget", "op": "gte", "value": 5000},
        {"field": "phone_country", "op": "in", "value": ["1", "44"]},
        {"field": "email", "op": "exists", "value": True},
        {"field": "email_domain", "op": "not_equals", "value": "example.org"},
    ]
    # The router reads the saved rule at once, and it routes as a JSON-typed one would.
    assert [r.name for r in services.routing_rules_active()] == ["Big budgets"]
    source = WebhookSource.objects.create(name="make", secret="s3cret-value")
    lead = Lead.objects.create(
        source=source,
        email="ada@big.example",
        phone="+15551234567",
        custom_answers={"budget": "7500"},
        received_at=timezone.now(),
    )
    assert services.lead_route(lead=lead).rule_name == "Big budgets"


def test_json_is_still_accepted(admin_client):
    conditions = [{"field": "answers.budget", "op": "gt", "value": 100}]
    # A post with only the JSON (as before the editor, or from a script) ...
    response = admin_client.post(ADD_URL, {**_base(), "conditions": json.dumps(conditions)})
    assert response.status_code == 302, _errors(response)
    rule = RoutingRule.objects.get()
    assert rule.conditions == conditions
    # ... and the JSON box edited on the page, the rows left as they were shown.
    page = admin_client.get(f"/admin/webhooks/routingrule/{rule.pk}/change/").content.decode()
    assert 'value="answers.budget"' in page and '<option value="gt" selected>' in page
    edited = [{"field": "source", "op": "equals", "value": "make"}]
    response = admin_client.post(
        f"/admin/webhooks/routingrule/{rule.pk}/change/",
        {**_base(), **_rows(("answers.budget", "gt", "100"), ("", "", "")), "conditions": json.dumps(edited)},
    )
    assert response.status_code == 302, _errors(response)
    rule.refresh_from_db()
    assert rule.conditions == edited


def test_a_rule_saved_before_the_editor_comes_back_unchanged(admin_client):
    """Untouched rows keep their stored condition exactly, even what a row cannot show as typed."""
    stored = [
        {"field": "answers.tags", "op": "in", "value": ["a, b", "c"]},  # an option with a comma in it
        {"field": "answers.budget", "op": "gte", "value": 2.5},
        {"field": "is_test", "op": "equals", "value": False},
    ]
    rule = RoutingRule.objects.create(name="Old", position=3, priority="high", conditions=stored)
    url = f"/admin/webhooks/routingrule/{rule.pk}/change/"
    page = admin_client.get(url).content.decode()
    shown = {
        key: value for key, value in re.findall(r'name="(conditions-\d+-(?:field|value))"[^>]*value="([^"]*)"', page)
    }
    ops = {
        name: (re.findall(r'<option value="([a-z_]*)" selected>', options) or [""])[0]
        for name, options in re.findall(r'<select name="(conditions-\d+-op)"[^>]*>(.*?)</select>', page, flags=re.S)
    }
    data = {**_base(name="Old", position=3, priority="high"), "conditions-TOTAL": "5"}
    data.update(shown)
    data.update(ops)
    data["conditions"] = json.dumps(stored, indent=2)
    response = admin_client.post(url, data)
    assert response.status_code == 302, _errors(response)
    rule.refresh_from_db()
    assert rule.conditions == stored


def test_removing_and_changing_rows(admin_client):
    rule = RoutingRule.objects.create(
        name="Two",
        position=1,
        conditions=[{"field": "email", "op": "contains", "value": "@"}, {"field": "gclid", "op": "exists"}],
    )
    response = admin_client.post(
        f"/admin/webhooks/routingrule/{rule.pk}/change/",
        {
            **_base(name="Two"),
            **_rows(("email", "contains", "@acme.example"), ("gclid", "exists", "yes"), remove=(1,)),
            "conditions": json.dumps(rule.conditions, indent=2),
        },
    )
    assert response.status_code == 302, _errors(response)
    rule.refresh_from_db()
    assert rule.conditions == [{"field": "email", "op": "contains", "value": "@acme.example"}]


@pytest.mark.parametrize(
    "row, says",
    [
        (("", "equals", "x"), "Condition 1: name the field to test"),
        (("email", "", "x"), "Condition 1: choose an operator for “email”"),
        (("email", "like", "x"), "“like” is not an operator"),
        (("answers.budget", "gte", "lots"), "compares numbers; write a number such as 5000, not “lots”"),
        (("answers.budget", "lt", "NaN"), "write a number such as 5000"),
        (("email", "equals", ""), "needs a value in the Value box"),
        (("email", "regex", "(unclosed"), "is not a valid regular expression"),
        (("email", "exists", "maybe"), "takes yes (the lead has a value) or no"),
        (("phone_country", "in", " , "), "separated by commas"),
    ],
)
def test_bad_rows_answer_with_a_form_error_saying_how_to_fix_it(admin_client, row, says):
    response = admin_client.post(ADD_URL, {**_base(), **_rows(row), "conditions": "[]"})
    assert response.status_code == 200
    assert says in _errors(response).replace("&quot;", '"').replace("&#x27;", "'")
    assert not RoutingRule.objects.exists()
    # What the person typed is shown back for them to fix.
    assert f'value="{row[0]}"' in response.content.decode()


@pytest.mark.parametrize(
    "text, says",
    [
        ('[{"field": "x", "op": "like"}]', "In the JSON box: Condition 1: op must be one of"),
        ('[{"field": "x", "op": "gte", "value": 1', "does not hold valid JSON"),
        ('[{"field": "x", "op": "gte", "value": NaN}]', "NaN is not a number JSON allows"),
        ('{"field": "x"}', "Conditions must be a list"),
    ],
)
def test_bad_json_answers_with_a_form_error(admin_client, text, says):
    response = admin_client.post(ADD_URL, {**_base(), "conditions": text})
    assert response.status_code == 200
    assert says in _errors(response).replace("&quot;", '"')
    assert not RoutingRule.objects.exists()
    # The JSON box opens on what was typed.
    assert '<details class="ads-conditions-json" open>' in response.content.decode()


def test_changing_both_the_rows_and_the_json_is_refused(admin_client):
    response = admin_client.post(
        ADD_URL,
        {
            **_base(),
            **_rows(("email", "contains", "@a.example")),
            "conditions": json.dumps([{"field": "email", "op": "contains", "value": "@b.example"}]),
        },
    )
    assert response.status_code == 200
    assert "changed both in the rows and in the JSON box" in _errors(response)


def test_no_condition_is_the_default_route():
    form = RoutingRuleForm(data={**_base(), **_rows(("", "", ""), ("", "", "")), "conditions": "[]"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["conditions"] == []
    assert not form.has_changed() or form.changed_data != ["conditions"]
