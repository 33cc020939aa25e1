"""Factories for campaign-side rows; every test builds exactly the data it asserts on."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from campaigns.access import account_access_grant
from campaigns.models import AccountAccess, AccountRole, AdAccount, AdGroup, Campaign, DailyMetric, SyncRun
from campaigns.services import account_data_read_from, default_sync_window
from tests.conftest import PASSWORD


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


class AdGroupFactory(factory.django.DjangoModelFactory):
    """A Google ad group (no budget of its own); for a Meta ABO ad set pass a Meta campaign and
    ``daily_budget_micros`` or ``lifetime_budget_micros``."""

    class Meta:
        model = AdGroup

    campaign = factory.SubFactory(CampaignFactory)
    # The model repeats the campaign's account and platform (one indexed filter for scoping).
    account = factory.SelfAttribute("campaign.account")
    platform = factory.SelfAttribute("campaign.platform")
    external_id = factory.Sequence(lambda n: f"{7_000_000 + n}")
    name = factory.Sequence(lambda n: f"Ad group {n:04d}")
    status = "enabled"


class SyncRunFactory(factory.django.DjangoModelFactory):
    """A sync run as stored, over the window a sync of its account reads (as ``sync_run_create``
    sets it). It runs nothing and takes no lease: to run a sync, call ``campaign_sync``.

    Saving a succeeded run still fires the app's own after-sync hook (the alert evaluation on commit).
    """

    class Meta:
        model = SyncRun

    class Params:
        running = factory.Trait(
            status=SyncRun.Status.RUNNING,
            started_at=factory.LazyFunction(timezone.now),
            progress="Reading campaigns…",
        )
        succeeded = factory.Trait(
            status=SyncRun.Status.SUCCEEDED,
            started_at=factory.LazyFunction(lambda: timezone.now() - dt.timedelta(seconds=30)),
            finished_at=factory.LazyFunction(timezone.now),
        )
        failed = factory.Trait(
            status=SyncRun.Status.FAILED,
            started_at=factory.LazyFunction(lambda: timezone.now() - dt.timedelta(seconds=30)),
            finished_at=factory.LazyFunction(timezone.now),
            attempts=1,
            error_class="TransientError",
            error_message="The platform was unavailable.",
        )

    account = factory.SubFactory(AdAccountFactory)
    trigger = SyncRun.Trigger.MANUAL
    status = SyncRun.Status.QUEUED
    date_from = factory.LazyAttribute(lambda run: default_sync_window(run.account)[0])
    date_to = factory.LazyAttribute(lambda run: default_sync_window(run.account)[1])


class UserFactory(factory.django.DjangoModelFactory):
    """A person who signs in with ``tests.conftest.PASSWORD``; no role until one is granted."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"person-{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # create_user hashes the password, as every account made in admin or by a command is.
        return model_class.objects.create_user(*args, password=PASSWORD, **kwargs)


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class AccountAccessFactory(factory.django.DjangoModelFactory):
    """A role on one account (``account=None``: every account), granted through
    ``campaigns.access.account_access_grant``: one row per grantee and account, and the user's
    cached scope forgotten, as every grant does. ``for_group=True`` grants to a new group."""

    class Meta:
        model = AccountAccess

    class Params:
        for_group = factory.Trait(user=None, group=factory.SubFactory(GroupFactory))

    user = factory.SubFactory(UserFactory)
    group = None
    account = factory.SubFactory(AdAccountFactory)
    role = AccountRole.VIEWER
    granted_by = None  # the user who granted it; the service keeps their username

    @classmethod
    def _create(cls, model_class, *, user, group, account, role, granted_by):
        return account_access_grant(account=account, role=role, user=user, group=group, granted_by=granted_by)


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
