"""Writes and workflows of the optimization app: guardrails, the optimizer and its proposals.

Budget and status changes themselves live in ``optimization.changes`` (the one guarded path
every change takes, proposals included); alerts in ``optimization.alerts``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import AdAccount
from campaigns.services import account_today
from optimization import optimizer, selectors
from optimization.changes import (
    BudgetPlatformUnavailable,
    Target,
    actor_name,
    budget_change_check,
    enqueue_push_on_commit,
    format_money,
    pending_refusal,
    platform_view,
    refuse,
)
from optimization.conf import setting
from optimization.models import AccountBudgetSettings, GuardrailChange, OptimizationRun, PlatformCallRecord
from platforms.base import minor_unit_micros
from platforms.observe import PlatformCall

logger = logging.getLogger(__name__)

# --- Guardrails ------------------------------------------------------------------------------------

GUARDRAIL_FIELDS = (
    "max_campaign_daily_budget_micros",
    "monthly_budget_micros",
    "target_cpa_micros",
    "target_roas",
    "min_campaign_daily_budget_micros",
    "optimizer_enabled",
    "auto_apply",
)


def _guardrail_text(value: Any) -> str:
    return "" if value is None else str(value)


def budget_settings_save(*, budget_settings: AccountBudgetSettings, actor: Any) -> list[GuardrailChange]:
    """Save an account's guardrails and record each value that changed (who, when, old → new),
    in one transaction: a setting never changes without its audit row."""
    before = (
        AccountBudgetSettings.objects.filter(pk=budget_settings.pk).values(*GUARDRAIL_FIELDS).first()
        if budget_settings.pk
        else None
    ) or {}
    with transaction.atomic():
        budget_settings.save()
        changes = [
            GuardrailChange(
                account_id=budget_settings.account_id,
                field=name,
                old_value=_guardrail_text(before.get(name)),
                new_value=_guardrail_text(getattr(budget_settings, name)),
                changed_by=actor if getattr(actor, "pk", None) else None,
                changed_by_name=actor_name(actor),
            )
            for name in GUARDRAIL_FIELDS
            if _guardrail_text(before.get(name)) != _guardrail_text(getattr(budget_settings, name))
        ]
        GuardrailChange.objects.bulk_create(changes)
    if changes:
        logger.info(
            "guardrails changed",
            extra={"account_id": budget_settings.account_id, "fields": [c.field for c in changes]},
        )
    return changes


# --- Optimizer proposals --------------------------------------------------------------------------


def optimizer_guardrails(*, budget_settings: AccountBudgetSettings | None) -> optimizer.Guardrails:
    minimum = setting("OPTIMIZER_MIN_DAILY_BUDGET_MICROS")
    if budget_settings and budget_settings.min_campaign_daily_budget_micros:
        minimum = budget_settings.min_campaign_daily_budget_micros
    return optimizer.Guardrails(
        max_daily_change=Decimal(setting("OPTIMIZER_MAX_DAILY_CHANGE")),
        min_daily_budget_micros=minimum,
        min_conversions=Decimal(setting("OPTIMIZER_MIN_CONVERSIONS")),
        max_daily_budget_micros=budget_settings.max_campaign_daily_budget_micros if budget_settings else None,
    )


def optimizer_snapshot(
    *, account: AdAccount, budget_settings: AccountBudgetSettings | None
) -> optimizer.AccountSnapshot:
    """The account's numbers as the optimizer sees them: complete days only, in the account's dates."""
    today = account_today(account)
    yesterday = today - timedelta(days=1)
    lookback = setting("OPTIMIZER_LOOKBACK_DAYS")
    rows = selectors.campaign_performance(
        account=account,
        date_from=today - timedelta(days=lookback),
        date_to=yesterday,
        changed_since=timezone.now() - timedelta(hours=24),
    )
    return optimizer.AccountSnapshot(
        account_id=account.pk,
        currency_code=account.currency_code,
        minor_unit_micros=minor_unit_micros(account.currency_code),
        today=today,
        lookback_days=lookback,
        campaigns=[
            optimizer.CampaignStats(
                campaign_id=row.campaign_id,
                name=row.name,
                status=row.status,
                daily_budget_micros=row.daily_budget_micros,
                cost_micros=row.cost_micros,
                conversions=row.conversions,
                conversion_value_micros=row.conversion_value_micros,
                budget_is_shared=row.budget_is_shared,
                changed_today=row.changed_today,
            )
            for row in rows
        ],
        target_cpa_micros=budget_settings.target_cpa_micros if budget_settings else None,
        target_roas=budget_settings.target_roas if budget_settings else None,
        monthly_budget_micros=budget_settings.monthly_budget_micros if budget_settings else None,
        month_spend_through_yesterday_micros=selectors.account_spend_between(
            account=account, date_from=today.replace(day=1), date_to=yesterday
        ),
    )


def optimizer_run(*, account: AdAccount, actor: Any = None, apply: bool = False) -> list[OptimizationRun]:
    """Propose budget changes for one account; older open proposals are superseded.

    With ``apply`` (or the account's auto-apply setting) the proposals are approved at once;
    one a guard refuses stays proposed with the guard's message.
    """
    budget_settings = selectors.account_budget_settings(account=account)
    proposals = optimizer.propose(
        optimizer_snapshot(account=account, budget_settings=budget_settings),
        optimizer_guardrails(budget_settings=budget_settings),
    )
    batch = uuid.uuid4().hex
    now = timezone.now()
    with transaction.atomic():
        OptimizationRun.objects.filter(campaign__account=account, status=OptimizationRun.Status.PROPOSED).update(
            status=OptimizationRun.Status.REJECTED,
            error_message=f"Superseded by optimizer run {batch}.",
            decided_at=now,
            finished_at=now,
            updated_at=now,
        )
        runs = [
            OptimizationRun.objects.create(
                campaign_id=proposal.campaign_id,
                old_budget_micros=proposal.old_budget_micros,
                new_budget_micros=proposal.new_budget_micros,
                reason=proposal.reason,
                source=OptimizationRun.Source.OPTIMIZER,
                status=OptimizationRun.Status.PROPOSED,
                proposal_kind=proposal.kind,
                proposal_batch=batch,
            )
            for proposal in proposals
        ]
    if apply or (budget_settings and budget_settings.auto_apply):
        for index, run in enumerate(runs):
            try:
                runs[index] = proposal_approve(run=run, actor=actor)
            except (ValidationError, BudgetPlatformUnavailable) as exc:
                OptimizationRun.objects.filter(pk=run.pk).update(error_message=_message_of(exc)[:4000])
                run.refresh_from_db()
    logger.info("optimizer ran", extra={"account_id": account.pk, "proposals": len(runs), "batch": batch})
    return runs


def optimizer_run_all() -> int:
    """The daily run over every account that has the optimizer enabled."""
    total = 0
    for account in selectors.optimizer_accounts():
        try:
            total += len(optimizer_run(account=account))
        except Exception:
            logger.exception("optimizer failed for an account", extra={"account_id": account.pk})
    return total


def proposal_approve(*, run: OptimizationRun, actor: Any) -> OptimizationRun:
    """Approve a proposal: the same guards as any change, then it is pushed like one."""
    run = OptimizationRun.objects.select_related("campaign__account").get(pk=run.pk)
    if run.status != OptimizationRun.Status.PROPOSED:
        raise refuse(
            "status",
            f"Only proposed changes can be approved; #{run.pk} is {run.get_status_display().lower()}.",
            "not_proposed",
        )
    campaign = run.campaign
    if campaign.daily_budget_micros != run.old_budget_micros:
        currency = campaign.account.currency_code
        raise refuse(
            "daily_budget_micros",
            f"The budget is {format_money(campaign.daily_budget_micros, currency)} now, not the "
            f"{format_money(run.old_budget_micros, currency)} this proposal started from; run the optimizer again.",
            "proposal_outdated",
        )
    target = Target.of(campaign=campaign)
    # The optimizer proposes budgets only, and a budget run's new_budget_micros is never NULL
    # (the table's check constraint).
    budget_change_check(target=target, new_micros=cast(int, run.new_budget_micros), reason=run.reason)
    view = platform_view(target)
    if view.budget_level != campaign.budget_level or view.daily_budget_micros != campaign.daily_budget_micros:
        raise refuse(
            "daily_budget_micros",
            f"The budget changed on {target.platform_name} since the last sync; sync the account and run the "
            f"optimizer again.",
            "changed_on_platform",
        )
    now = timezone.now()
    try:
        with transaction.atomic():
            moved = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PROPOSED).update(
                status=OptimizationRun.Status.PENDING,
                decided_by=actor if getattr(actor, "pk", None) else None,
                decided_by_name=actor_name(actor),
                decided_at=now,
                error_message="",
                updated_at=now,
            )
    except IntegrityError:
        raise pending_refusal(target) from None
    if not moved:
        raise refuse("status", f"#{run.pk} was decided by someone else meanwhile.", "not_proposed")
    run.refresh_from_db()
    enqueue_push_on_commit(run)
    return run


def proposal_reject(*, run: OptimizationRun, actor: Any, note: str = "") -> OptimizationRun:
    now = timezone.now()
    rejected = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PROPOSED).update(
        status=OptimizationRun.Status.REJECTED,
        decided_by=actor if getattr(actor, "pk", None) else None,
        decided_by_name=actor_name(actor),
        decided_at=now,
        finished_at=now,
        error_message=note[:4000],
        updated_at=now,
    )
    run.refresh_from_db()
    if not rejected:
        raise refuse(
            "status",
            f"Only proposed changes can be rejected; #{run.pk} is {run.get_status_display().lower()}.",
            "not_proposed",
        )
    return run


def _message_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


# --- Platform call records ------------------------------------------------------------------------


def platform_call_record(call: PlatformCall) -> None:
    """Listener of every platform call (registered in the app config): the API failure alert counts these."""
    try:
        PlatformCallRecord.objects.create(
            platform=call.platform,
            operation=call.operation[:64],
            outcome=call.outcome,
            error_code=(call.error_code or "")[:128],
            seconds=call.seconds,
            called_at=timezone.now(),
        )
    except Exception:
        # No database here (a test without one, a management command before migrate):
        # an unrecorded call only makes the error rate less precise.
        logger.debug("platform call not recorded", exc_info=True)


def platform_calls_prune(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=setting("PLATFORM_CALL_RETENTION_HOURS"))
    deleted, _ = PlatformCallRecord.objects.filter(called_at__lt=cutoff).delete()
    return deleted
