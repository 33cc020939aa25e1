"""Factories for the conversions app: actions, ledger rows and service keys.

Ledger rows are built the way ingestion stores them (identifiers hashed with ``conversions.hashing``,
the dedupe key of what makes the conversion the same one, the payload the uploader sends), for
tests of what reads the ledger: admin, the dashboard, the uploader's claims. A test of ingestion
itself posts through the API or ``conversions_ingest_google`` / ``conversions_ingest_meta``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import factory
from django.utils import timezone

from conversions import hashing
from conversions.models import Conversion, ConversionAction, ServiceApiKey, default_service_scopes
from conversions.services import service_api_key_create
from tests.campaigns.factories import AdAccountFactory


def _dedupe_key(*parts: object) -> str:
    """The key ingestion computes (SHA-256 of its parts joined by "|"), so a repeat is recognised."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _units(micros: int | None) -> str | None:
    return None if micros is None else str(Decimal(micros) / 1_000_000)


class ConversionActionFactory(factory.django.DjangoModelFactory):
    """A Google conversion action of a Google account (a Meta pixel: pass a Meta account).
    Get-or-create on the account and id, like ``conversion_action_ensure``."""

    class Meta:
        model = ConversionAction
        django_get_or_create = ("account", "external_id")

    account = factory.SubFactory(AdAccountFactory)
    external_id = factory.Sequence(lambda n: f"{880_100_000 + n}")
    name = factory.Sequence(lambda n: f"Purchase {n}")
    is_active = True


class ConversionFactory(factory.django.DjangoModelFactory):
    """A Google click conversion with an order id, pending upload, as ingestion stores it.

    ``uploaded``, ``rejected`` and ``failed`` are the outcomes the uploader leaves behind.
    """

    class Meta:
        model = Conversion

    class Params:
        email = factory.Sequence(lambda n: f"Buyer.{n}@Example.com")  # hashed, never stored
        gclid = factory.Sequence(lambda n: f"Cj0KCQ-test-gclid-{n:06d}")
        uploaded = factory.Trait(
            status=Conversion.Status.UPLOADED,
            attempts=1,
            next_attempt_at=None,
            uploaded_at=factory.LazyFunction(timezone.now),
            request_id=factory.Sequence(lambda n: f"request-{n:06d}"),
        )
        rejected = factory.Trait(
            status=Conversion.Status.REJECTED,
            attempts=1,
            next_attempt_at=None,
            platform_code="CONVERSION_PRECEDES_EVENT",
            platform_message="The conversion precedes the click.",
        )
        failed = factory.Trait(
            status=Conversion.Status.FAILED,
            attempts=8,
            next_attempt_at=None,
            last_error="gave up",
        )

    action = factory.SubFactory(ConversionActionFactory)
    account = factory.SelfAttribute("action.account")
    platform = factory.SelfAttribute("account.platform")
    order_id = factory.Sequence(lambda n: f"order-{n:06d}")
    click_id_type = "gclid"
    hashed_email = factory.LazyAttribute(lambda c: hashing.google_hash_email(c.email))
    value_micros = 49_900_000
    currency_code = factory.SelfAttribute("account.currency_code")
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    # Google keeps one conversion per order id and action.
    dedupe_key = factory.LazyAttribute(
        lambda c: _dedupe_key("google", c.account.external_id, c.action.external_id, "order", c.order_id)
    )
    payload = factory.LazyAttribute(
        lambda c: {
            "gclid": c.gclid,
            "conversion_date_time": c.occurred_at.isoformat(),
            "conversion_value": _units(c.value_micros),
            "currency_code": c.currency_code,
            "order_id": c.order_id,
            "hashed_email": c.hashed_email,
            "hashed_phone": "",
            "consent_ad_user_data": "GRANTED",
            "consent_ad_personalization": "DENIED",
        }
    )
    status = Conversion.Status.PENDING
    next_attempt_at = factory.LazyFunction(timezone.now)  # due at once, as ingestion leaves it
    source = "checkout service"


class MetaConversionFactory(ConversionFactory):
    """A Meta website Purchase event with an event id, pending upload, as ingestion stores it."""

    action = factory.SubFactory(ConversionActionFactory, account=factory.SubFactory(AdAccountFactory, platform="meta"))
    event_name = "Purchase"
    event_id = factory.Sequence(lambda n: f"evt-{n:06d}")
    click_id_type = ""
    hashed_email = factory.LazyAttribute(lambda c: hashing.meta_hash("em", c.email))
    # Meta dedupes on event_name + event_id.
    dedupe_key = factory.LazyAttribute(lambda c: _dedupe_key("meta", c.action.external_id, c.event_name, c.event_id))
    payload = factory.LazyAttribute(
        lambda c: {
            "event_name": c.event_name,
            "event_time": int(c.occurred_at.timestamp()),
            "event_id": c.event_id,
            "action_source": "website",
            "event_source_url": "https://shop.example.com/thank-you",
            "user_data": {"em": c.hashed_email, "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
            "custom_data": {
                "value": _units(c.value_micros),
                "currency": c.currency_code.lower(),
                "order_id": c.order_id,
            },
        }
    )


class ServiceApiKeyFactory(factory.django.DjangoModelFactory):
    """A service key made by ``conversions.services.service_api_key_create``: only its hash is
    stored, and the raw key it returned once is on ``key.raw_key`` (never saved), so a test can
    authenticate with it: ``APIClient(HTTP_X_SERVICE_AUTH=key.raw_key)``.

    ``raw_key`` may be given (a configured key); ``accounts`` limits the key to those accounts.
    """

    class Meta:
        model = ServiceApiKey
        skip_postgeneration_save = True  # the service saved it; accounts are a many-to-many

    name = factory.Sequence(lambda n: f"service {n}")
    scopes = factory.LazyFunction(default_service_scopes)
    raw_key = ""  # empty: the service draws a new random key
    is_active = True

    @classmethod
    def _create(cls, model_class, *, name, scopes, raw_key, is_active):
        key, raw = service_api_key_create(name=name, raw_key=raw_key, scopes=scopes)
        if not is_active:
            key.is_active = False
            key.save(update_fields=["is_active"])
        key.raw_key = raw
        return key

    @classmethod
    def _build(cls, model_class, **kwargs):
        raise TypeError("A service key exists only as the service stores it: use ServiceApiKeyFactory(), not .build().")

    @factory.post_generation
    def accounts(key, create, extracted, **kwargs):
        if create and extracted:
            key.accounts.set(extracted)
