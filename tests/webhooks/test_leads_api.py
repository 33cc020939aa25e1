"""The leads API, the loop back to Google, the admin pages and the metrics."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.webhooks.conftest import RELAY_SECRET, flat_payload, post_json
from webhooks import services
from webhooks.models import Lead, RoutingRule, WebhookEvent


@pytest.fixture
def leads(db, relay_source) -> dict[str, Lead]:
    """Three leads received in the order low, urgent, normal."""
    made = {}
    for name, priority in (("low", "low"), ("urgent", "urgent"), ("normal", "normal")):
        made[name] = Lead.objects.create(
            source=relay_source,
            full_name=name,
            email=f"{name}@example.org",
            priority=priority,
            gclid=f"gclid-{name}",
            received_at=timezone.now(),
        )
    return made


def test_leads_need_a_token(api_client, leads):
    response = api_client.get("/api/v1/leads/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_list_puts_the_urgent_lead_first(auth_client, leads):
    body = auth_client.get("/api/v1/leads/").json()
    assert [row["priority"] for row in body["results"]] == ["urgent", "normal", "low"]
    assert body["results"][0]["deliveries"] == []


def test_list_filters(auth_client, leads):
    body = auth_client.get("/api/v1/leads/", {"priority": "low", "source": "zapier"}).json()
    assert [row["full_name"] for row in body["results"]] == ["low"]
    assert auth_client.get("/api/v1/leads/", {"priority": "soon"}).status_code == 400


def test_detail_and_stage_update(advertiser_client, leads):
    lead = leads["normal"]
    assert advertiser_client.get(f"/api/v1/leads/{lead.pk}/").json()["stage"] == "new"
    response = advertiser_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "contacted"}, format="json")
    assert response.status_code == 200
    assert response.json()["stage"] == "contacted"
    lead.refresh_from_db()
    assert lead.stage_changed_at is not None


def test_stage_update_refuses_unknown_stages_and_missing_leads(advertiser_client, leads):
    response = advertiser_client.patch(f"/api/v1/leads/{leads['low'].pk}/", {"stage": "maybe"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["stage"]
    assert advertiser_client.patch("/api/v1/leads/999999/", {"stage": "won"}, format="json").status_code == 404


def test_a_lead_whose_account_has_no_conversion_action_records_no_conversion(
    advertiser_client, leads, django_capture_on_commit_callbacks
):
    lead = leads["urgent"]
    with django_capture_on_commit_callbacks(execute=True):
        advertiser_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "qualified"}, format="json")
    lead.refresh_from_db()
    assert (lead.stage, lead.conversion_created_at) == ("qualified", None)


# --- Admin ----------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, staff_user):
    """A browser session of the operator in Django admin."""
    client.force_login(staff_user)
    return client


def test_admin_pages_render(admin_client, api_client, relay_source, email_destination):
    response = post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    event_id = response.json()["id"]
    lead = services.webhook_event_process(event_id=event_id)
    rule = RoutingRule.objects.create(name="Big budget", conditions=[{"field": "budget", "op": "gte", "value": 100}])
    for url in (
        "/admin/webhooks/webhookevent/",
        f"/admin/webhooks/webhookevent/{event_id}/change/",
        "/admin/webhooks/lead/",
        f"/admin/webhooks/lead/{lead.pk}/change/",
        "/admin/webhooks/routingrule/",
        f"/admin/webhooks/routingrule/{rule.pk}/change/",
        "/admin/webhooks/webhooksource/",
        f"/admin/webhooks/webhooksource/{relay_source.pk}/change/",
        "/admin/webhooks/destination/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert RELAY_SECRET not in page.content.decode(), url


def test_admin_rule_preview_explains_the_match(admin_client, relay_source):
    rule = RoutingRule.objects.create(name="Big budget", conditions=[{"field": "budget", "op": "gte", "value": 100}])
    lead = Lead.objects.create(source=relay_source, custom_answers={"budget": "250"}, received_at=timezone.now())
    page = admin_client.get(f"/admin/webhooks/routingrule/{rule.pk}/preview/", {"lead": lead.pk}).content.decode()
    assert "this rule <strong>matches</strong>" in page
    assert "250" in page


def test_admin_rule_edit_refuses_bad_conditions_and_invalidates_the_cache(admin_client, db):
    base = {"name": "R", "position": 1, "is_active": "on", "priority": "urgent"}
    bad = admin_client.post(
        "/admin/webhooks/routingrule/add/", {**base, "conditions": '[{"field": "x", "op": "like"}]'}
    )
    assert bad.status_code == 200 and "op must be one of" in bad.content.decode()
    assert services.routing_rules_active() == ()  # held in memory from here on
    admin_client.post("/admin/webhooks/routingrule/add/", {**base, "conditions": "[]"})
    assert RoutingRule.objects.count() == 1
    assert [rule.name for rule in services.routing_rules_active()] == ["R"]  # the edit refreshed it


def test_admin_replay_requeues_a_failed_event(
    admin_client, api_client, relay_source, django_capture_on_commit_callbacks
):
    response = post_json(api_client, "/api/v1/webhooks/zapier", {"note": "x"}, **{"X-Webhook-Secret": RELAY_SECRET})
    event_id = response.json()["id"]
    services.webhook_event_process(event_id=event_id)
    assert WebhookEvent.objects.get(pk=event_id).status == "failed"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        admin_client.post("/admin/webhooks/webhookevent/", {"action": "replay", "_selected_action": [event_id]})
    assert WebhookEvent.objects.get(pk=event_id).status == "received"
    assert len(callbacks) == 1


def test_admin_source_form_keeps_the_secret_when_left_blank(admin_client, api_client, relay_source):
    assert (
        post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": "old-one"}).status_code
        == 401
    )
    admin_client.post(
        f"/admin/webhooks/webhooksource/{relay_source.pk}/change/",
        {"name": "zapier", "kind": "relay", "secret": "", "previous_secret": "old-one", "is_active": "on"},
    )
    relay_source.refresh_from_db()
    assert (relay_source.secret, relay_source.previous_secret) == (RELAY_SECRET, "old-one")
    # Receivers hold sources in memory; the admin's save makes them reload at once.
    assert (
        post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": "old-one"}).status_code
        == 202
    )


# --- Metrics ----------------------------------------------------------------------------------


def test_metrics_show_events_lag_and_the_oldest_unprocessed_event(client, api_client, relay_source):
    post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": RELAY_SECRET})
    post_json(api_client, "/api/v1/webhooks/zapier", flat_payload(), **{"X-Webhook-Secret": "wrong"})
    WebhookEvent.objects.update(received_at=timezone.now() - timezone.timedelta(minutes=5))
    text = client.get("/metrics").content.decode()
    assert 'ads_webhook_events_total{outcome="accepted",source="zapier"}' in text
    assert 'ads_webhook_events_total{outcome="unauthorized",source="zapier"}' in text
    assert "ads_webhook_lag_seconds_bucket" in text
    age_line = next(
        line for line in text.splitlines() if line.startswith("ads_webhook_oldest_unprocessed_event_age_seconds")
    )
    assert float(age_line.split()[-1]) >= 299


def test_openapi_schema_describes_the_receivers_and_leads(api_client):
    paths = api_client.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert set(paths["/api/v1/webhooks/zapier"]["post"]["responses"]) >= {"200", "202", "400", "401", "413", "415"}
    assert "post" in paths["/api/v1/webhooks/google-lead-form"]
    assert {"get", "patch"} <= set(paths["/api/v1/leads/{id}/"])
    assert "get" in paths["/api/v1/leads/"]


def test_a_viewer_reads_leads_but_cannot_move_them(auth_client, leads):
    lead = leads["low"]
    assert auth_client.get(f"/api/v1/leads/{lead.pk}/").status_code == 200
    refused = auth_client.patch(f"/api/v1/leads/{lead.pk}/", {"stage": "won"}, format="json")
    assert refused.status_code == 403 and "advertiser role" in refused.json()["error"]["message"]
    lead.refresh_from_db()
    assert lead.stage == "new"


def test_the_admin_lead_list_puts_the_urgent_lead_first_with_contact_columns(client, staff_user, leads):
    client.force_login(staff_user)
    page = client.get("/admin/webhooks/lead/").content.decode()
    rows = [row for row in page.split("<tr")[1:] if 'class="field-priority"' in row]
    priorities = [row.split('class="field-priority">')[1].split("<")[0] for row in rows]
    order = ["Urgent", "High", "Normal", "Low"]
    assert priorities == sorted(priorities, key=order.index) and priorities[0] == "Urgent"
    assert "column-phone" in page and "column-email" in page
