"""Priority routing: ordered rules, conditions, the default rule, and rules held in memory."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from tests.campaigns.factories import CampaignFactory
from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json
from tests.webhooks.factories import DestinationFactory, RoutingRuleFactory
from webhooks import services
from webhooks.models import Destination, Lead, LeadDelivery, RoutingRule
from webhooks.services import leads


def ingest_and_process(client, **fields) -> Lead:
    response = post_json(
        client, "/api/v1/webhooks/zapier", flat_payload(**fields), **{"X-Webhook-Secret": RELAY_SECRET}
    )
    assert response.status_code == 202, response.content
    return services.webhook_event_process(event_id=response.json()["id"])


@pytest.fixture
def slack_destination(db) -> Destination:
    """A Slack-compatible channel for urgent leads."""
    return DestinationFactory(slack=True, name="Slack #leads")


@pytest.fixture
def rules(db, crm_destination, email_destination, slack_destination) -> dict[str, RoutingRule]:
    """Big budgets are urgent; a partner domain is high; everything else is normal (the default rule)."""
    return {
        "big_budget": RoutingRuleFactory(
            name="Big budget",
            position=10,
            priority="urgent",
            conditions=[{"field": "answers.budget", "op": "gte", "value": 10000}],
            destinations=[crm_destination, slack_destination],
        ),
        "partner": RoutingRuleFactory(
            name="Partner domain",
            position=20,
            priority="high",
            conditions=[{"field": "email_domain", "op": "in", "value": ["example.org", "partner.io"]}],
            destinations=[crm_destination, email_destination],
        ),
        "default": RoutingRuleFactory(name="Everyone else", position=1000, destinations=[email_destination]),
    }


def test_first_matching_rule_in_order_wins(api_client, relay_source, rules):
    lead = ingest_and_process(api_client, lead_id="a", budget="12000", email="x@example.org")
    assert (lead.priority, lead.matched_rule) == ("urgent", rules["big_budget"])
    assert sorted(d.destination.name for d in lead.deliveries.all()) == ["CRM", "Slack #leads"]

    lead = ingest_and_process(api_client, lead_id="b", budget="500", email="x@example.org")
    assert (lead.priority, lead.matched_rule) == ("high", rules["partner"])

    lead = ingest_and_process(api_client, lead_id="c", budget="500", email="x@elsewhere.net")
    assert (lead.priority, lead.matched_rule) == ("normal", rules["default"])
    assert [d.destination.name for d in lead.deliveries.all()] == ["Sales desk"]


def test_reordering_rules_changes_the_route_once_invalidated(api_client, relay_source, rules):
    services.routing_rules_active()  # this process has loaded the rules
    rules["big_budget"].position = 30
    rules["big_budget"].save()
    # Not yet invalidated: every process still routes on the rules it holds in memory.
    lead = ingest_and_process(api_client, lead_id="stale", budget="12000", email="x@example.org")
    assert lead.matched_rule == rules["big_budget"]

    services.routing_rules_invalidate()
    lead = ingest_and_process(api_client, lead_id="fresh", budget="12000", email="x@example.org")
    assert lead.matched_rule == rules["partner"]


def test_routing_costs_no_query_per_lead(rules, relay_source, django_assert_num_queries):
    services.routing_rules_active()  # loaded once
    lead = Lead(source=relay_source, email="x@example.org", custom_answers={"budget": "1"})
    with django_assert_num_queries(0):
        for _ in range(50):
            services.lead_route(lead=lead)


def test_inactive_rules_and_destinations_are_skipped(api_client, relay_source, rules, crm_destination):
    rules["big_budget"].is_active = False
    rules["big_budget"].save()
    crm_destination.is_active = False
    crm_destination.save()
    services.routing_rules_invalidate()
    lead = ingest_and_process(api_client, lead_id="x", budget="99999", email="x@example.org")
    assert lead.matched_rule == rules["partner"]
    assert [d.destination.name for d in lead.deliveries.all()] == ["Sales desk"]


def test_no_matching_rule_means_normal_and_no_deliveries(api_client, relay_source, db):
    lead = ingest_and_process(api_client, lead_id="nobody")
    assert (lead.priority, lead.matched_rule, lead.deliveries.count()) == ("normal", None, 0)


def test_test_leads_never_reach_the_crm(api_client, relay_source, rules):
    lead = ingest_and_process(api_client, lead_id="t", budget="50000", is_test=True)
    assert lead.priority == "urgent"
    assert [d.destination.name for d in lead.deliveries.all()] == ["Slack #leads"]


def test_conditions_on_campaign_form_and_regex(api_client, relay_source, email_destination):
    # The Google campaign the relay's payload names (campaign_id 50000000000).
    CampaignFactory(external_id="50000000000", name="Brand - Search")
    RoutingRuleFactory(
        priority="high",
        conditions=[
            {"field": "campaign_name", "op": "contains", "value": "brand"},
            {"field": "form_id", "op": "equals", "value": 40000000000},
            {"field": "phone", "op": "regex", "value": r"^\+1650"},
        ],
        destinations=[email_destination],
    )
    lead = ingest_and_process(api_client, lead_id="brand")
    assert lead.campaign.name == "Brand - Search"
    assert lead.priority == "high"

    other = ingest_and_process(api_client, lead_id="other", phone="+44 20 7946 0958")
    assert other.phone == "+442079460958"
    assert other.priority == "normal"


@pytest.mark.parametrize(
    ("condition", "answers", "expected"),
    [
        ({"field": "budget", "op": "gt", "value": 100}, {"budget": "1,000"}, True),
        ({"field": "budget", "op": "lt", "value": 100}, {"budget": "not a number"}, False),
        ({"field": "budget", "op": "lte", "value": "100"}, {"budget": 100}, True),
        ({"field": "timeline", "op": "equals", "value": "This Week"}, {"timeline": "this week"}, True),
        ({"field": "timeline", "op": "not_equals", "value": "later"}, {"timeline": "now"}, True),
        ({"field": "timeline", "op": "in", "value": "now, today"}, {"timeline": "Today"}, True),
        ({"field": "answers.Timeline", "op": "exists"}, {"timeline": "x"}, True),
        ({"field": "missing", "op": "exists", "value": False}, {}, True),
        ({"field": "gclid", "op": "exists", "value": True}, {}, False),
    ],
)
def test_condition_operators(relay_source, condition, answers, expected):
    RoutingRuleFactory(priority="urgent", conditions=[condition])  # the only rule
    lead = Lead(source=relay_source, custom_answers=answers)
    assert (services.lead_route(lead=lead).priority == "urgent") is expected


@pytest.mark.parametrize(
    "conditions",
    [
        "not a list",
        [{"op": "equals", "value": 1}],
        [{"field": "x", "op": "like", "value": 1}],
        [{"field": "x", "op": "regex", "value": "("}],
        [{"field": "x", "op": "gt", "value": "many"}],
        [{"field": "x", "op": "equals"}],
    ],
)
def test_malformed_conditions_are_refused(conditions):
    with pytest.raises(ValidationError):
        services.routing_conditions_validate(conditions)


def test_explain_shows_each_condition(relay_source, rules):
    lead = Lead(source=relay_source, email="x@partner.io", custom_answers={"budget": "20"})
    results = services.routing_rule_explain(rule=rules["partner"], lead=lead)
    assert [(r.field, r.actual, r.matched) for r in results] == [("email_domain", "partner.io", True)]
    assert services.routing_rule_explain(rule=rules["big_budget"], lead=lead)[0].matched is False


def test_processing_twice_creates_nothing_new(api_client, relay_source, rules):
    lead = ingest_and_process(api_client, lead_id="once", budget="20000")
    again = services.webhook_event_process(event_id=lead.events.get().pk)
    assert again.pk == lead.pk
    assert Lead.objects.count() == 1
    assert LeadDelivery.objects.filter(lead=lead).count() == 2


def test_event_that_cannot_become_a_lead_is_failed_not_retried(api_client, relay_source):
    response = post_json(
        api_client, "/api/v1/webhooks/zapier", {"note": "no contact"}, **{"X-Webhook-Secret": RELAY_SECRET}
    )
    assert services.webhook_event_process(event_id=response.json()["id"]) is None
    event = relay_source.events.get()
    assert event.status == "failed"
    assert "no email, phone or name" in event.last_error


def test_nul_characters_never_reach_the_database(api_client, relay_source):
    lead = ingest_and_process(api_client, lead_id="nul", full_name="Ada\u0000", notes="a\u0000b", **{"k\u0000": "v"})
    assert lead.full_name == "Ada"
    assert lead.custom_answers["notes"] == "ab"
    assert lead.custom_answers["k"] == "v"


def test_an_event_that_keeps_crashing_is_given_up_and_can_be_replayed(api_client, relay_source, monkeypatch):
    response = post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    event_id = response.json()["id"]

    def crash(**_):
        raise RuntimeError("a bug")

    monkeypatch.setattr(leads, "lead_route", crash)  # where processing looks it up
    for _ in range(services.MAX_EVENT_ATTEMPTS):
        with pytest.raises(RuntimeError):
            services.webhook_event_process(event_id=event_id)
    assert services.webhook_event_process(event_id=event_id) is None
    event = relay_source.events.get()
    assert (event.status, event.attempts) == ("failed", services.MAX_EVENT_ATTEMPTS + 1)

    monkeypatch.undo()
    assert services.webhook_event_replay(event=event) is True
    assert services.webhook_event_process(event_id=event_id).external_lead_id == "make-0001"


def test_a_fresh_install_routes_every_lead_to_the_operators_and_the_dashboard_says_when_not(
    db, settings, staff_user, relay_source
):
    from io import StringIO

    from dashboard.data import dashboard_data
    from dashboard.filters import DashboardFilters
    from webhooks import bootstrap

    def notes() -> list[str]:
        return dashboard_data(filters=DashboardFilters(dt.date(2026, 6, 1), dt.date(2026, 6, 17))).notes

    assert any("go nowhere" in note for note in notes())
    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    bootstrap.run(stdout=StringIO())
    bootstrap.run(stdout=StringIO())  # a restart changes nothing

    rule = RoutingRule.objects.get()
    assert rule.conditions == [] and rule.is_active
    (destination,) = rule.destinations.all()
    assert destination.kind == "email" and destination.recipients == "oncall@example.com, operator@example.com"
    assert notes() == []
    decision = services.lead_route(lead=Lead(source=relay_source, email="x@y.org", full_name="X"))
    assert [pk for pk, _ in decision.destinations] == [destination.pk]

    Destination.objects.filter(pk=destination.pk).update(recipients="")
    assert notes() == [f"Email destination “{destination.name}” has no recipients: its leads fail to send."]


def test_an_install_with_rules_gets_no_default_route(db, relay_source):
    RoutingRuleFactory(conditions=[{"field": "email_domain", "op": "equals", "value": "p.io"}])
    assert services.routing_default_ensure(recipients=["a@b.co"]) is None
    assert RoutingRule.objects.count() == 1
