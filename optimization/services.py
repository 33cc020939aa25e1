"""Writes and workflows of the optimization app: budget changes and the optimizer (alerts: ``optimization.alerts``).

Every budget change, whatever its source, goes through ``budget_change`` (or, for optimizer
proposals, ``proposal_approve``): the guards run, an ``OptimizationRun`` records the request,
and a task pushes it after commit. ``budget_push`` applies it only once the platform
confirms; a refusal is recorded with the platform's words and the local budget stays.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import AdAccount, Campaign, CampaignStatus
from campaigns.services import account_today, campaign_cache_invalidate
from optimization import optimizer, selectors
from optimization.conf import setting
from optimization.models import AccountBudgetSettings, GuardrailChange, OptimizationRun, PlatformCallRecord
from platforms.base import BudgetUpdate, CampaignInfo, PlatformError, TransientError, minor_unit_micros
from platforms.observe import PlatformCall
from platforms.registry import get_platform

logger = logging.getLogger(__name__)

PLATFORM_NAMES = {"google": "Google Ads", "meta": "Meta"}


class BudgetPlatformUnavailable(Exception):
    """The platform could not be read before a change; nothing was changed, try again later."""


def format_money(micros: int | Decimal | None, currency_code: str) -> str:
    if micros is None:
        return "—"
    unit = minor_unit_micros(currency_code)
    places = 0 if unit >= 1_000_000 else (3 if unit == 1_000 else 2)
    return f"{Decimal(micros) / 1_000_000:,.{places}f} {currency_code}"


def _actor_name(actor: Any) -> str:
    """The name the audit trail keeps (a deleted user's rows keep it; the optimizer has none)."""
    return actor.get_username() if getattr(actor, "pk", None) else ""


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
                changed_by_name=_actor_name(actor),
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


def _refuse(field_name: str, message: str, code: str) -> ValidationError:
    return ValidationError({field_name: ValidationError(message, code=code)})


# --- Budget changes -------------------------------------------------------------------------------


def budget_change(
    *,
    campaign: Campaign,
    new_micros: int,
    reason: str,
    actor: Any,
    source: str,
    confirm_large_change: bool = False,
    confirm_shared_budget: bool = False,
) -> OptimizationRun:
    """Check a new daily budget against every guard, record it, and push it after commit.

    Raises ``ValidationError`` (one field, one message saying how to fix it) when a guard
    refuses, and ``BudgetPlatformUnavailable`` when the platform cannot be read first.
    """
    campaign = Campaign.objects.select_related("account").get(pk=campaign.pk)
    budget_change_check(
        campaign=campaign,
        new_micros=new_micros,
        reason=reason,
        confirm_large_change=confirm_large_change,
        confirm_shared_budget=confirm_shared_budget,
    )
    budget_check_platform(campaign=campaign)
    try:
        with transaction.atomic():
            run = OptimizationRun.objects.create(
                campaign=campaign,
                old_budget_micros=campaign.daily_budget_micros,
                new_budget_micros=new_micros,
                reason=reason.strip(),
                requested_by=actor if getattr(actor, "pk", None) else None,
                requested_by_name=_actor_name(actor),
                source=source,
                status=OptimizationRun.Status.PENDING,
                confirmed_large_change=confirm_large_change,
                confirmed_shared_budget=confirm_shared_budget,
            )
    except IntegrityError:
        raise _pending_refusal(campaign) from None
    _enqueue_push_on_commit(run)
    logger.info(
        "budget change requested",
        extra={"run_id": run.pk, "campaign_id": str(campaign.pk), "source": source, "new_micros": new_micros},
    )
    return run


def budget_change_check(
    *,
    campaign: Campaign,
    new_micros: int,
    reason: str,
    confirm_large_change: bool = False,
    confirm_shared_budget: bool = False,
) -> None:
    """The guards that need no platform call, cheapest first; raises ValidationError on the first refusal."""
    account = campaign.account
    currency = account.currency_code
    if not (reason or "").strip():
        raise _refuse(
            "reason", "A reason is required: say why the budget changes; it is kept in the audit trail.", "required"
        )
    if campaign.status == CampaignStatus.REMOVED:
        raise _refuse(
            "campaign",
            f"Campaign “{campaign.name}” is removed on the platform; a removed campaign's budget cannot be changed.",
            "campaign_removed",
        )
    if new_micros <= 0:
        raise _refuse(
            "daily_budget_micros",
            f"The daily budget must be positive (got {new_micros} micros). To stop spending, pause the campaign.",
            "not_positive",
        )
    unit = minor_unit_micros(currency)
    if new_micros % unit:
        rounded = new_micros - new_micros % unit
        raise _refuse(
            "daily_budget_micros",
            f"{new_micros} micros is not a whole number of {currency} minimum units ({unit:,} micros = "
            f"{format_money(unit, currency)}); use e.g. {rounded} ({format_money(rounded, currency)}).",
            "not_minimum_unit_multiple",
        )
    budget_settings = selectors.account_budget_settings(account=account)
    cap = budget_settings.max_campaign_daily_budget_micros if budget_settings else None
    if cap is not None and new_micros > cap:
        raise _refuse(
            "daily_budget_micros",
            f"{format_money(new_micros, currency)} is above the account's cap of {format_money(cap, currency)} "
            f"per campaign per day; choose at most that, or raise the cap in the account's budget settings.",
            "above_account_cap",
        )
    old = campaign.daily_budget_micros
    if old == new_micros:
        raise _refuse(
            "daily_budget_micros",
            f"The daily budget is already {format_money(old, currency)}; there is nothing to change.",
            "unchanged",
        )
    ratio = setting("BUDGET_LARGE_CHANGE_RATIO")
    if old and abs(new_micros - old) > old * Decimal(ratio) and not confirm_large_change:
        change = Decimal(new_micros - old) / old * 100
        raise _refuse(
            "confirm_large_change",
            f"{format_money(old, currency)} → {format_money(new_micros, currency)} per day is a {change:+.0f}% change, "
            f"beyond ±{Decimal(ratio) * 100:.0f}%; confirm the large change (API: confirm_large_change=true) "
            f"if it is intended.",
            "large_change_unconfirmed",
        )
    pending = selectors.pending_run_for(campaign=campaign)
    if pending is not None:
        raise _pending_refusal(campaign, pending)
    if campaign.budget_is_shared and not confirm_shared_budget:
        siblings = selectors.shared_budget_siblings(campaign=campaign)
        names = ", ".join(f"“{c.name}”" for c in siblings) or "other campaigns"
        raise _refuse(
            "confirm_shared_budget",
            f"This Google budget is shared with {names}: changing it changes their daily budget too. "
            f"Confirm the shared budget change (API: confirm_shared_budget=true) if that is intended.",
            "shared_budget_unconfirmed",
        )


def _pending_refusal(campaign: Campaign, pending: OptimizationRun | None = None) -> ValidationError:
    which = f"Budget change #{pending.pk}" if pending else "Another budget change"
    return _refuse(
        "campaign",
        f"{which} of “{campaign.name}” is still being pushed to the platform; wait until it is applied or failed.",
        "change_pending",
    )


def budget_check_platform(*, campaign: Campaign) -> CampaignInfo:
    """Read the platform's current budget: never overwrite a value changed there since the last sync."""
    account = campaign.account
    platform_name = PLATFORM_NAMES.get(account.platform, account.platform)
    try:
        info = get_platform(account.platform).get_campaign(account, campaign.external_id)
    except TransientError as exc:
        raise BudgetPlatformUnavailable(
            f"{platform_name} could not be reached to read the current budget ({exc}); nothing was changed, "
            f"try again in a minute."
        ) from exc
    except PlatformError as exc:
        raise _refuse(
            "campaign", f"{platform_name} refused to show the campaign: {exc}. Nothing was changed.", "platform_refused"
        ) from exc
    currency = account.currency_code
    if info.status == CampaignStatus.REMOVED:
        raise _refuse(
            "campaign",
            f"Campaign “{campaign.name}” was removed on {platform_name}; its budget cannot be changed.",
            "campaign_removed",
        )
    if info.daily_budget_micros is None or info.budget_level != "campaign":
        raise _refuse(
            "campaign",
            f"Campaign “{campaign.name}” has no campaign daily budget on {platform_name} (a lifetime budget, or "
            f"budgets on its ad sets); change it on {platform_name}.",
            "no_daily_budget",
        )
    if info.daily_budget_micros != campaign.daily_budget_micros:
        raise _refuse(
            "daily_budget_micros",
            f"The budget changed on {platform_name} since the last sync: it is "
            f"{format_money(info.daily_budget_micros, currency)} there, the last sync saw "
            f"{format_money(campaign.daily_budget_micros, currency)}. Nothing was changed; sync the account "
            f"and decide again from the current value.",
            "changed_on_platform",
        )
    return info


def _enqueue_push_on_commit(run: OptimizationRun) -> None:
    from optimization.tasks import push_budget_change  # tasks import services; keep that one-way

    transaction.on_commit(lambda: enqueue_quietly(push_budget_change, run.pk))


def enqueue_quietly(task, *args) -> None:
    # A broker outage must not fail the request: the run stays pending and the sweeper re-sends it.
    try:
        task.delay(*args)
    except Exception:
        logger.warning("could not enqueue %s; the sweeper will retry", task.name, exc_info=True)


def budget_push(*, run: OptimizationRun) -> OptimizationRun:
    """Push a pending change to the platform; idempotent, so a redelivered task changes nothing.

    Transient platform errors propagate for the task to retry; any other refusal fails the run
    with the platform's message and leaves the local budget as it was.
    """
    run = OptimizationRun.objects.select_related("campaign__account").get(pk=run.pk)
    if run.status != OptimizationRun.Status.PENDING:
        return run
    OptimizationRun.objects.filter(pk=run.pk).update(push_attempts=F("push_attempts") + 1, updated_at=timezone.now())
    campaign = run.campaign
    account = campaign.account
    adapter = get_platform(account.platform)
    platform_name = PLATFORM_NAMES.get(account.platform, account.platform)
    try:
        info = adapter.get_campaign(account, campaign.external_id)
        if info.daily_budget_micros == run.new_budget_micros:
            # Already there: an earlier attempt was confirmed but its outcome never got saved.
            update = BudgetUpdate(campaign.external_id, info.daily_budget_micros, raw={"already_set": True})
            return _mark_applied(run, update)
        if info.daily_budget_micros != run.old_budget_micros:
            currency = account.currency_code
            return _mark_failed(
                run,
                f"Not pushed: the budget changed on {platform_name} after this change was requested (it is "
                f"{format_money(info.daily_budget_micros, currency)} there, the request assumed "
                f"{format_money(run.old_budget_micros, currency)}). Sync and decide again.",
                {"platform_daily_budget_micros": info.daily_budget_micros, "code": "changed_on_platform"},
            )
        update = adapter.update_daily_budget(account, info, run.new_budget_micros)
    except TransientError:
        raise
    except PlatformError as exc:
        return _mark_failed(
            run,
            f"{platform_name} refused the change: {exc.message}",
            {"code": exc.code, "message": exc.message, "request_id": exc.request_id, "details": _jsonable(exc.details)},
        )
    return _mark_applied(run, update)


def _mark_applied(run: OptimizationRun, update: BudgetUpdate) -> OptimizationRun:
    now = timezone.now()
    campaign = run.campaign
    with transaction.atomic():
        claimed = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
            status=OptimizationRun.Status.APPLIED,
            applied_at=now,
            finished_at=now,
            next_attempt_at=None,
            error_message="",
            updated_at=now,
            platform_response={
                "daily_budget_micros": update.daily_budget_micros,
                "resource": update.resource,
                "raw": _jsonable(update.raw),
            },
        )
        if claimed:
            affected = Campaign.objects.filter(pk=campaign.pk)
            if campaign.budget_is_shared and campaign.budget_external_id:
                # The budget is one object on the platform: every campaign on it changed.
                affected = Campaign.objects.filter(
                    account_id=campaign.account_id, budget_external_id=campaign.budget_external_id
                )
            affected.update(daily_budget_micros=update.daily_budget_micros, updated_at=now)
            transaction.on_commit(campaign_cache_invalidate)
    run.refresh_from_db()
    logger.info("budget change applied", extra={"run_id": run.pk, "campaign_id": str(campaign.pk)})
    return run


def _mark_failed(run: OptimizationRun, message: str, response: dict[str, Any]) -> OptimizationRun:
    now = timezone.now()
    OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
        status=OptimizationRun.Status.FAILED,
        error_message=message[:4000],
        platform_response=response,
        finished_at=now,
        next_attempt_at=None,
        updated_at=now,
    )
    run.refresh_from_db()
    logger.warning("budget change failed", extra={"run_id": run.pk, "code": response.get("code", "")})
    return run


def budget_push_retry_at(*, run: OptimizationRun, delay_seconds: float, error: Exception) -> None:
    OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
        error_message=f"Platform unavailable, retrying in {delay_seconds:.0f}s: {error}"[:4000],
        updated_at=timezone.now(),
    )


def budget_push_give_up(*, run: OptimizationRun, error: Exception) -> OptimizationRun:
    """Retries ran out while the platform stayed unavailable: the change did not happen."""
    return _mark_failed(
        run,
        f"The platform stayed unavailable after {run.push_attempts} attempts; the change was not applied: {error}",
        {"code": getattr(error, "code", "") or type(error).__name__, "message": str(error)},
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


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
        raise _refuse(
            "status",
            f"Only proposed changes can be approved; #{run.pk} is {run.get_status_display().lower()}.",
            "not_proposed",
        )
    campaign = run.campaign
    if campaign.daily_budget_micros != run.old_budget_micros:
        currency = campaign.account.currency_code
        raise _refuse(
            "daily_budget_micros",
            f"The budget is {format_money(campaign.daily_budget_micros, currency)} now, not the "
            f"{format_money(run.old_budget_micros, currency)} this proposal started from; run the optimizer again.",
            "proposal_outdated",
        )
    budget_change_check(campaign=campaign, new_micros=run.new_budget_micros, reason=run.reason)
    budget_check_platform(campaign=campaign)
    now = timezone.now()
    try:
        with transaction.atomic():
            moved = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PROPOSED).update(
                status=OptimizationRun.Status.PENDING,
                decided_by=actor if getattr(actor, "pk", None) else None,
                decided_by_name=_actor_name(actor),
                decided_at=now,
                error_message="",
                updated_at=now,
            )
    except IntegrityError:
        raise _pending_refusal(campaign) from None
    if not moved:
        raise _refuse("status", f"#{run.pk} was decided by someone else meanwhile.", "not_proposed")
    run.refresh_from_db()
    _enqueue_push_on_commit(run)
    return run


def proposal_reject(*, run: OptimizationRun, actor: Any, note: str = "") -> OptimizationRun:
    now = timezone.now()
    rejected = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PROPOSED).update(
        status=OptimizationRun.Status.REJECTED,
        decided_by=actor if getattr(actor, "pk", None) else None,
        decided_by_name=_actor_name(actor),
        decided_at=now,
        finished_at=now,
        error_message=note[:4000],
        updated_at=now,
    )
    run.refresh_from_db()
    if not rejected:
        raise _refuse(
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
