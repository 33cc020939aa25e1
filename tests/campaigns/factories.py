"""Factories for campaign-side rows; every test builds exactly the data it asserts on."""

from __future__ import annotations

import datetime as dt

import factory

from campaigns.models import AdAccount, Campaign, DailyMetric
from campaigns.services import account_data_read_from


class AdAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AdAccount
        django_get_or_create = ("platform", "external_id")

    platform = "google"
    external_id = factory.Sequence(lambda n: f"{1_000_000_000 + n}")
    name = factory.Sequence(lambda n: f"Account {n}")
    currency_code = "USD"
    time_zone = "America/New_York"


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    account = factory.SubFactory(AdAccountFactory)
    platform = factory.SelfAttribute("account.platform")
    external_id = factory.Sequence(lambda n: f"{5_000 + n}")
    name = factory.Sequence(lambda n: f"Campaign {n:04d}")
    status = "enabled"
    daily_budget_micros = 10_000_000


def add_metrics(
    campaign: Campaign,
    *,
    days: int,
    end: dt.date,
    cost_micros: int = 1_000_000,
    clicks: int = 10,
    impressions: int = 100,
    conversions: int = 1,
    value_micros: int = 3_000_000,
) -> None:
    DailyMetric.objects.bulk_create(
        DailyMetric(
            campaign=campaign,
            date=end - dt.timedelta(days=offset),
            impressions=impressions,
            clicks=clicks,
            cost_micros=cost_micros,
            conversions=conversions,
            conversion_value_micros=value_micros,
        )
        for offset in range(days)
    )
    if days > 0:
        # As a sync that read these days would: they are synced data, not "no data".
        account_data_read_from(account_id=campaign.account_id, day=end - dt.timedelta(days=days - 1))
