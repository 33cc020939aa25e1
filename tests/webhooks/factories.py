"""Factories for the webhook app: sources, inbound events, leads, destinations, rules, deliveries.

Secrets (a source's secret, a destination's URL and signing secret) are given in clear to the
model fields, which encrypt them at rest as every save in the app does. Sources, destinations
and rules are held in process memory by the receivers and the router; their factories announce
each new row the way admin does after a save (``webhook_sources_invalidate``,
``routing_rules_invalidate``), so the next request sees it.
"""

from __future__ import annotations

import base64
import json

import factory
from django.utils import timezone

from webhooks import services
from webhooks.models import Destination, Lead, LeadDelivery, Priority, RoutingRule, WebhookEvent, WebhookSource


class WebhookSourceFactory(factory.django.DjangoModelFactory):
    """A Make.com / Zapier relay source with its shared secret (``google_lead_form=True``: a
    Google Ads lead form source, whose secret is the google_key)."""

    class Meta:
        model = WebhookSource
        skip_postgeneration_save = True

    class Params:
        google_lead_form = factory.Trait(
            kind=WebhookSource.Kind.GOOGLE_LEAD_FORM,
            secret=factory.Sequence(lambda n: f"google-form-key-{n:06d}"),
        )

    name = factory.Sequence(lambda n: f"source-{n}")
    kind = WebhookSource.Kind.RELAY
    secret = factory.Sequence(lambda n: f"relay-secret-{n:06d}-0123456789")
    is_active = True

    @factory.post_generation
    def announced(source, create, extracted, **kwargs):
        if create:
            services.webhook_sources_invalidate()  # receivers hold sources in memory


class LeadFactory(factory.django.DjangoModelFactory):
    """A lead as processing leaves it: contact details normalized (E.164 phone), a Google click
    id, received and processed at once, new and of normal priority, routed by no rule."""

    class Meta:
        model = Lead

    source = factory.SubFactory(WebhookSourceFactory)
    external_lead_id = factory.Sequence(lambda n: f"lead-{n:06d}")  # unique when not empty
    full_name = factory.Sequence(lambda n: f"Lead Person {n}")
    email = factory.Sequence(lambda n: f"lead{n}@example.org")
    phone = factory.Sequence(lambda n: f"+1650555{n % 10_000:04d}")
    phone_raw = factory.LazyAttribute(lambda lead: f"({lead.phone[2:5]}) {lead.phone[5:8]}-{lead.phone[8:]}")
    gclid = factory.Sequence(lambda n: f"EAIaIQobChMI-lead-{n:06d}")
    received_at = factory.LazyFunction(timezone.now)
    processed_at = factory.SelfAttribute("received_at")
    priority = Priority.NORMAL


class WebhookEventFactory(factory.django.DjangoModelFactory):
    """An accepted relay request, stored verbatim and not processed yet (``processed=True``: done,
    with the lead it made)."""

    class Meta:
        model = WebhookEvent

    class Params:
        lead_id = factory.Sequence(lambda n: f"make-{n:06d}")
        processed = factory.Trait(
            status=WebhookEvent.Status.PROCESSED,
            attempts=1,
            processed_at=factory.LazyFunction(timezone.now),
            lead=factory.SubFactory(
                LeadFactory,
                source=factory.SelfAttribute("..source"),
                external_lead_id=factory.SelfAttribute("..lead_id"),
            ),
        )

    source = factory.SubFactory(WebhookSourceFactory)
    dedupe_key = factory.LazyAttribute(lambda event: f"lead:{event.lead_id}")  # unique per source
    raw_body = factory.LazyAttribute(
        lambda event: json.dumps({"lead_id": event.lead_id, "email": "ada@example.org", "phone": "(650) 555-0199"})
    )
    content_type = "application/json"
    headers = factory.LazyFunction(lambda: {"content-type": "application/json"})
    status = WebhookEvent.Status.RECEIVED
    received_at = factory.LazyFunction(timezone.now)


def _signing_secret(n: int) -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random-looking bytes in base64."""
    return "whsec_" + base64.b64encode(f"crm-signing-secret-{n:05d}".encode()).decode()


class DestinationFactory(factory.django.DjangoModelFactory):
    """A CRM endpoint that signs each POST (``email=True``: a mailbox; ``slack=True``: a
    Slack-compatible incoming webhook)."""

    class Meta:
        model = Destination
        skip_postgeneration_save = True

    class Params:
        email = factory.Trait(
            kind=Destination.Kind.EMAIL, url="", signing_secret="", recipients="sales@example.com, oncall@example.com"
        )
        slack = factory.Trait(
            kind=Destination.Kind.SLACK,
            url=factory.Sequence(lambda n: f"https://hooks.example.com/services/T000/B000/{n:06d}"),
            signing_secret="",
        )

    name = factory.Sequence(lambda n: f"Destination {n}")
    kind = Destination.Kind.CRM
    url = factory.Sequence(lambda n: f"https://crm{n}.example.com/leads")
    signing_secret = factory.Sequence(_signing_secret)
    recipients = ""
    is_active = True

    @factory.post_generation
    def announced(destination, create, extracted, **kwargs):
        if create:
            services.routing_rules_invalidate()  # compiled rules carry only active destinations


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    """A rule; without ``conditions`` it matches every lead (a default route). Conditions are
    checked by ``routing_conditions_validate``, as the rule editor checks them, so a factory
    never stores a rule the editor would refuse. ``destinations=[...]`` sets where it routes."""

    class Meta:
        model = RoutingRule
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Rule {n}")
    position = factory.Sequence(lambda n: 10 * (n + 1))
    is_active = True
    conditions = factory.LazyFunction(list)
    priority = Priority.NORMAL

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        services.routing_conditions_validate(kwargs["conditions"])
        return super()._create(model_class, *args, **kwargs)

    @factory.post_generation
    def destinations(rule, create, extracted, **kwargs):
        if create and extracted:
            rule.destinations.set(extracted)

    @factory.post_generation
    def announced(rule, create, extracted, **kwargs):
        if create:
            services.routing_rules_invalidate()  # what the admin does after every save


class LeadDeliveryFactory(factory.django.DjangoModelFactory):
    """One lead owed to one destination, as routing creates it: pending, or awaiting the digest
    when a low lead goes to an email or Slack destination (``lead_delivery_awaits_digest``)."""

    class Meta:
        model = LeadDelivery

    lead = factory.SubFactory(LeadFactory)
    destination = factory.SubFactory(DestinationFactory)
    status = factory.LazyAttribute(
        lambda d: (
            LeadDelivery.Status.AWAITING_DIGEST
            if services.lead_delivery_awaits_digest(priority=d.lead.priority, kind=d.destination.kind)
            else LeadDelivery.Status.PENDING
        )
    )
