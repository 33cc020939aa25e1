"""Every factory builds a row the app itself would accept: saved, then validated like a form would
(field choices and lengths, unique and check constraints), and with its invariants in place."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from campaigns.access import access_scope
from conversions.services import service_api_key_authenticate
from optimization.models import GuardrailChange
from tests.campaigns import factories as campaigns
from tests.connections import factories as connections
from tests.conversions import factories as conversions
from tests.optimization import factories as optimization
from tests.webhooks import factories as webhooks
from webhooks import services as webhook_services

pytestmark = pytest.mark.django_db

FACTORIES = [
    campaigns.AdAccountFactory,
    campaigns.CampaignFactory,
    campaigns.AdGroupFactory,
    campaigns.SyncRunFactory,
    lambda: campaigns.SyncRunFactory(running=True),
    lambda: campaigns.SyncRunFactory(succeeded=True),
    lambda: campaigns.SyncRunFactory(failed=True),
    campaigns.UserFactory,
    campaigns.GroupFactory,
    campaigns.AccountAccessFactory,
    lambda: campaigns.AccountAccessFactory(account=None, role="admin"),
    lambda: campaigns.AccountAccessFactory(for_group=True, role="advertiser"),
    connections.GoogleOAuthConnectionFactory,
    connections.MetaOAuthConnectionFactory,
    connections.ServiceAccountConnectionFactory,
    connections.SystemUserConnectionFactory,
    connections.EnvironmentConnectionFactory,
    lambda: connections.EnvironmentConnectionFactory(platform="meta"),
    conversions.ConversionActionFactory,
    conversions.ConversionFactory,
    lambda: conversions.ConversionFactory(uploaded=True),
    lambda: conversions.ConversionFactory(rejected=True),
    lambda: conversions.ConversionFactory(failed=True),
    conversions.MetaConversionFactory,
    conversions.ServiceApiKeyFactory,
    webhooks.WebhookSourceFactory,
    lambda: webhooks.WebhookSourceFactory(google_lead_form=True),
    webhooks.WebhookEventFactory,
    lambda: webhooks.WebhookEventFactory(processed=True),
    webhooks.LeadFactory,
    webhooks.DestinationFactory,
    lambda: webhooks.DestinationFactory(email=True),
    lambda: webhooks.DestinationFactory(slack=True),
    webhooks.RoutingRuleFactory,
    webhooks.LeadDeliveryFactory,
    optimization.AccountBudgetSettingsFactory,
    optimization.OptimizationRunFactory,
    lambda: optimization.OptimizationRunFactory(applied=True),
    lambda: optimization.OptimizationRunFactory(failed=True),
    lambda: optimization.OptimizationRunFactory(status_change=True),
    lambda: optimization.OptimizationRunFactory(on_ad_group=True),
    lambda: optimization.OptimizationRunFactory(proposal=True),
    optimization.AlertFactory,
    lambda: optimization.AlertFactory(kind="api_failures", severity="critical"),
    lambda: optimization.AlertFactory(resolved=True),
    optimization.PlatformCallRecordFactory,
    optimization.ProcessHeartbeatFactory,
]


# One row per platform (the environment's connection) or per watched process (a heartbeat).
SINGLETONS = (connections.EnvironmentConnectionFactory, optimization.ProcessHeartbeatFactory)


def _name(factory) -> str:
    return getattr(factory, "__name__", "")


@pytest.mark.parametrize("make", FACTORIES, ids=[f"{n}-{_name(f)}" for n, f in enumerate(FACTORIES)])
def test_every_factory_saves_a_valid_row(make):
    row = make()
    assert row.pk is not None
    stored = type(row).objects.get(pk=row.pk)
    stored.full_clean()  # raises on a choice, length, unique or check constraint the row breaks


def test_two_of_each_do_not_collide():
    """Sequences keep unique fields apart: a second row of each factory is as valid as the first."""
    for make in FACTORIES:
        if make in SINGLETONS or _name(make) == "<lambda>":
            continue  # traits are covered above
        make().full_clean()
        make().full_clean()


def test_a_factory_service_key_authenticates_with_its_raw_key():
    key = conversions.ServiceApiKeyFactory(scopes=["conversion_actions:read"])
    assert key.raw_key and key.raw_key.startswith(key.prefix) and key.raw_key not in key.key_hash
    assert service_api_key_authenticate(raw_key=key.raw_key) == key
    assert APIClient(HTTP_X_SERVICE_AUTH=key.raw_key).get("/api/v1/conversion-actions/").status_code == 200
    assert service_api_key_authenticate(raw_key=conversions.ServiceApiKeyFactory(is_active=False).raw_key) is None


def test_factory_secrets_are_encrypted_at_rest_and_read_back_in_clear():
    from django.db import connection

    source = webhooks.WebhookSourceFactory(secret="a-secret-only-the-sender-knows")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhooksource WHERE id = %s", [source.pk])
        (stored,) = cursor.fetchone()
    assert "a-secret-only-the-sender-knows" not in stored
    assert type(source).objects.get(pk=source.pk).secret == "a-secret-only-the-sender-knows"


def test_factories_that_go_through_a_service_keep_its_invariants():
    # Guardrails are saved with their audit rows.
    settings = optimization.AccountBudgetSettingsFactory(monthly_budget_micros=600_000_000)
    assert GuardrailChange.objects.filter(account=settings.account, field="monthly_budget_micros").get().new_value == (
        "600000000"
    )
    # A grant is one row per grantee and account, and the user's scope is read afresh.
    grant = campaigns.AccountAccessFactory(role="viewer")
    assert access_scope(grant.user).role_on(grant.account_id) == "viewer"
    again = campaigns.AccountAccessFactory(user=grant.user, account=grant.account, role="admin")
    assert again.pk == grant.pk and access_scope(grant.user).role_on(grant.account_id) == "admin"
    # A new rule is routed on at once, with its destinations.
    destination = webhooks.DestinationFactory(email=True)
    rule = webhooks.RoutingRuleFactory(destinations=[destination], priority="high")
    decision = webhook_services.lead_route(lead=webhooks.LeadFactory.build())
    assert decision.priority == "high" and [pk for pk, _ in decision.destinations] == [destination.pk]
    assert rule.destinations.get() == destination
    # A rule the editor would refuse is never stored.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        webhooks.RoutingRuleFactory(conditions=[{"field": "budget", "op": "gt", "value": "many"}])
