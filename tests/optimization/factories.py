"""Factories for the optimization app: guardrails, change records, alerts, platform calls, heartbeats."""

from __future__ import annotations

import datetime as dt
import uuid

import factory
from django.utils import timezone

from optimization.changes import actor_name
from optimization.models import AccountBudgetSettings, Alert, OptimizationRun, PlatformCallRecord, ProcessHeartbeat
from optimization.services import budget_settings_save
from tests.campaigns.factories import AdAccountFactory, AdGroupFactory, CampaignFactory


class AccountBudgetSettingsFactory(factory.django.DjangoModelFactory):
    """An account's guardrails, saved through ``optimization.services.budget_settings_save``: a
    setting never changes without its audit row, so the values given here are recorded as
    ``GuardrailChange`` rows by ``actor`` (default: nobody, as the optimizer or a seed)."""

    class Meta:
        model = AccountBudgetSettings

    account = factory.SubFactory(AdAccountFactory)
    actor = None  # the user who set them, kept on the audit rows

    @classmethod
    def _create(cls, model_class, *args, actor, **kwargs):
        budget_settings = model_class(*args, **kwargs)
        budget_settings_save(budget_settings=budget_settings, actor=actor)
        return budget_settings

    @classmethod
    def _build(cls, model_class, *args, actor, **kwargs):
        return model_class(*args, **kwargs)


class OptimizationRunFactory(factory.django.DjangoModelFactory):
    """A change record as ``optimization.changes`` stores it: by default a daily budget raise of a
    campaign, requested by staff and pending its push. ``requested_by_name`` follows the user, as
    the service keeps it for the audit trail.

    To request a change (the guards, the platform read, the push), call ``budget_change`` or
    ``status_change``; this builds the record those leave behind, without the platform. Traits:
    ``applied``, ``failed``, ``status_change`` (a pause), ``on_ad_group`` (the change is on one ad
    group of the campaign), ``proposal`` (an optimizer proposal awaiting approval).
    """

    class Meta:
        model = OptimizationRun

    class Params:
        applied = factory.Trait(
            status=OptimizationRun.Status.APPLIED,
            push_attempts=1,
            applied_at=factory.LazyFunction(timezone.now),
            finished_at=factory.SelfAttribute("applied_at"),
            platform_response=factory.LazyFunction(lambda: {"resource_name": "applied"}),
        )
        failed = factory.Trait(
            status=OptimizationRun.Status.FAILED,
            push_attempts=1,
            finished_at=factory.LazyFunction(timezone.now),
            error_message="The platform refused the budget.",
        )
        status_change = factory.Trait(
            kind=OptimizationRun.Kind.STATUS,
            budget_period="",
            old_budget_micros=None,
            new_budget_micros=None,
            old_status=factory.LazyAttribute(lambda run: (run.ad_group or run.campaign).status),
            new_status="paused",
            reason="Paused while the landing page is fixed.",
        )
        # A Meta ad set of an ABO campaign (the budget lives on the ad sets).
        on_ad_group = factory.Trait(
            level=OptimizationRun.Level.AD_GROUP,
            campaign=factory.SubFactory(
                CampaignFactory,
                account=factory.SubFactory(AdAccountFactory, platform="meta"),
                budget_level="ad_group",
                daily_budget_micros=None,
            ),
            ad_group=factory.SubFactory(
                AdGroupFactory, campaign=factory.SelfAttribute("..campaign"), daily_budget_micros=5_000_000
            ),
            old_budget_micros=factory.SelfAttribute("ad_group.daily_budget_micros"),
        )
        proposal = factory.Trait(
            source=OptimizationRun.Source.OPTIMIZER,
            status=OptimizationRun.Status.PROPOSED,
            requested_by=None,
            proposal_kind="reallocation",
            proposal_batch=factory.LazyFunction(lambda: str(uuid.uuid4())),
            reason="Moves budget toward the account's target CPA.",
        )

    kind = OptimizationRun.Kind.BUDGET
    level = OptimizationRun.Level.CAMPAIGN
    campaign = factory.SubFactory(CampaignFactory)
    ad_group = None
    budget_period = OptimizationRun.BudgetPeriod.DAILY
    old_budget_micros = factory.SelfAttribute("campaign.daily_budget_micros")
    new_budget_micros = factory.LazyAttribute(lambda run: (run.old_budget_micros or 10_000_000) * 6 // 5)
    reason = "More budget for a campaign that converts."
    source = OptimizationRun.Source.STAFF
    status = OptimizationRun.Status.PENDING
    requested_by = None
    requested_by_name = factory.LazyAttribute(lambda run: actor_name(run.requested_by))


# Alerts about one campaign; the others have the fixed subjects optimization/alerts.py gives them.
_CAMPAIGN_KINDS = frozenset({Alert.Kind.BUDGET_OVERSPEND, Alert.Kind.PACING_OVERSPEND})
_FIXED_SUBJECTS = {
    Alert.Kind.API_FAILURES: ("platform:google", "Google Ads"),
    Alert.Kind.WEBHOOK_DELAY: ("webhooks:inbox", "Webhook inbox"),
    Alert.Kind.WORKERS_STALLED: ("workers:celery", "Celery workers"),
    Alert.Kind.BEAT_STALLED: ("beat:scheduler", "Celery beat"),
    Alert.Kind.MONITOR_STALLED: ("monitor:alerts", "Alert monitor"),
}


def _fixed_subject(alert) -> tuple[str, str]:
    if alert.kind not in _FIXED_SUBJECTS:
        raise ValueError(f"Give the subject of a {alert.kind} alert (e.g. connection:<id>).")
    return _FIXED_SUBJECTS[alert.kind]


class AlertFactory(factory.django.DjangoModelFactory):
    """An open alert as the evaluation opens it, opened an hour ago and seen just now: by default
    a daily overspend of a new campaign (``campaign=`` names one), tied to its account; an alert
    of another kind gets that kind's fixed subject and no account. ``resolved=True``: cleared."""

    class Meta:
        model = Alert

    class Params:
        campaign = factory.Maybe(
            factory.LazyAttribute(lambda alert: alert.kind in _CAMPAIGN_KINDS),
            yes_declaration=factory.SubFactory(CampaignFactory),
            no_declaration=None,
        )
        resolved = factory.Trait(resolved_at=factory.LazyFunction(timezone.now))

    kind = Alert.Kind.BUDGET_OVERSPEND
    # One open alert per kind and subject (a partial unique constraint).
    subject = factory.LazyAttribute(
        lambda alert: f"campaign:{alert.campaign.pk}" if alert.campaign else _fixed_subject(alert)[0]
    )
    subject_label = factory.LazyAttribute(
        lambda alert: alert.campaign.name if alert.campaign else _fixed_subject(alert)[1]
    )
    account = factory.LazyAttribute(lambda alert: alert.campaign.account if alert.campaign else None)
    severity = Alert.Severity.WARNING
    value = 1.2
    threshold = 1.1
    message = factory.LazyAttribute(lambda alert: f"{Alert.Kind(alert.kind).label}: {alert.subject_label}.")
    opened_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    last_seen_at = factory.LazyFunction(timezone.now)


class PlatformCallRecordFactory(factory.django.DjangoModelFactory):
    """One platform call as the observed adapters report it: a successful Google search, just now."""

    class Meta:
        model = PlatformCallRecord

    platform = "google"
    operation = "search"
    outcome = "ok"
    error_code = ""
    seconds = 0.25
    called_at = factory.LazyFunction(timezone.now)


class ProcessHeartbeatFactory(factory.django.DjangoModelFactory):
    """A watched process's last sign of life, written just now (beat's, unless ``name`` says which).

    The name is not a sequence: the monitor watches exactly the three processes the model names
    (``BEAT``, ``MONITOR``, ``WORKER_CANARY``), one row each.
    """

    class Meta:
        model = ProcessHeartbeat

    name = ProcessHeartbeat.BEAT
    started_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))
    beat_at = factory.LazyFunction(timezone.now)
    details = factory.LazyFunction(lambda: {"host": "worker-1", "pid": 4242})
