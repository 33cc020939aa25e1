"""The one guarded, audited path for every budget and status change, on campaigns and ad groups.

Whatever its source (admin, API, optimizer), a change goes through the same steps:

1. the local guards, cheapest first, each refusal one field and one sentence saying how to fix it;
2. a read of the platform's current value: a value changed there since the last sync is never
   overwritten;
3. a change record (``OptimizationRun``) in status pending, pushed by a worker after commit;
4. ``change_push`` applies it only once the platform confirms, then writes the confirmed value
   locally; the next sync reads it back from the platform.

A preview runs steps 1 and 2 and then asks the platform itself (Google ``validate_only``, Meta
``execution_options=["validate_only"]``), and writes nothing at all.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import AdGroup, BudgetLevel, Campaign, CampaignStatus
from campaigns.services import campaign_cache_invalidate
from optimization import enqueue, selectors
from optimization.conf import setting
from optimization.models import OptimizationRun
from platforms.base import (
    BudgetUpdate,
    ChangeTarget,
    PlatformError,
    StatusUpdate,
    TransientError,
    format_money,
    minor_unit_micros,
)
from platforms.budget_rules import minimum_daily_budget_micros
from platforms.registry import platform_for_account

logger = logging.getLogger(__name__)

PLATFORM_NAMES = {"google": "Google Ads", "meta": "Meta"}
SETTABLE_STATUSES = (CampaignStatus.ENABLED.value, CampaignStatus.PAUSED.value)
Kind = OptimizationRun.Kind
Level = OptimizationRun.Level
Period = OptimizationRun.BudgetPeriod


class BudgetPlatformUnavailable(Exception):
    """The platform could not be read before a change; nothing was changed, try again later."""


def actor_name(actor: Any) -> str:
    """The name the audit trail keeps (a deleted user's rows keep it; the optimizer has none)."""
    return actor.get_username() if getattr(actor, "pk", None) else ""


def refuse(field_name: str, message: str, code: str) -> ValidationError:
    return ValidationError({field_name: ValidationError(message, code=code)})


# --- What is changed ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A campaign, or one of its ad groups / ad sets."""

    campaign: Campaign
    ad_group: AdGroup | None = None

    @classmethod
    def of(cls, *, campaign: Campaign | None = None, ad_group: AdGroup | None = None) -> Target:
        if ad_group is not None:
            ad_group = AdGroup.objects.select_related("campaign__account", "account").get(pk=ad_group.pk)
            return cls(campaign=ad_group.campaign, ad_group=ad_group)
        if campaign is None:
            raise TypeError("Target.of needs a campaign or an ad group")
        return cls(campaign=Campaign.objects.select_related("account").get(pk=campaign.pk))

    @property
    def level(self) -> str:
        return Level.AD_GROUP if self.ad_group is not None else Level.CAMPAIGN

    @property
    def obj(self) -> Campaign | AdGroup:
        return self.ad_group if self.ad_group is not None else self.campaign

    @property
    def account(self):
        return self.campaign.account

    @property
    def platform_name(self) -> str:
        return PLATFORM_NAMES.get(self.account.platform, self.account.platform)

    @property
    def noun(self) -> str:
        if self.ad_group is None:
            return "campaign"
        return "ad set" if self.account.platform == "meta" else "ad group"

    @property
    def label(self) -> str:
        return f"{self.noun} “{self.obj.name}”"

    def budget(self, period: str) -> int | None:
        if period == Period.LIFETIME:
            return self.ad_group.lifetime_budget_micros if self.ad_group else self.campaign.budget_micros
        return self.obj.daily_budget_micros

    def platform_target(self) -> ChangeTarget:
        return ChangeTarget(
            level=self.level,
            external_id=self.obj.external_id,
            campaign_external_id=self.campaign.external_id,
            budget_external_id="" if self.ad_group else self.campaign.budget_external_id,
        )


@dataclass(frozen=True)
class PlatformView:
    """The platform's current view of a target, read right before a change."""

    status: str
    daily_budget_micros: int | None
    lifetime_budget_micros: int | None
    budget_remaining_micros: int | None
    end_time: datetime | None
    budget_level: str  # campaign | ad_group

    def budget(self, period: str) -> int | None:
        return self.lifetime_budget_micros if period == Period.LIFETIME else self.daily_budget_micros


@dataclass
class ChangePreview:
    """What a dry run answers: would the platform take it, and if not, why (its own words)."""

    valid: bool
    errors: list[dict[str, str]] = field(default_factory=list)
    change: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(target: Target, *, kind: str, period: str = "", new_budget: int | None = None, new_status: str = ""):
    return {
        "kind": kind,
        "level": target.level,
        "campaign": str(target.campaign.pk),
        "ad_group": str(target.ad_group.pk) if target.ad_group else None,
        "platform": target.account.platform,
        "currency_code": target.account.currency_code,
        "budget_period": period if kind == Kind.BUDGET else "",
        "old_budget_micros": target.budget(period) if kind == Kind.BUDGET else None,
        "new_budget_micros": new_budget,
        "old_status": target.obj.status if kind == Kind.STATUS else "",
        "new_status": new_status,
    }


# --- Budget guards --------------------------------------------------------------------------------


def budget_field(period: str) -> str:
    return "lifetime_budget_micros" if period == Period.LIFETIME else "daily_budget_micros"


def _require_reason(reason: str, what: str) -> None:
    if not (reason or "").strip():
        raise refuse(
            "reason", f"A reason is required: say why the {what} changes; it is kept in the audit trail.", "required"
        )


def _require_not_removed(target: Target) -> None:
    if target.obj.status == CampaignStatus.REMOVED:
        raise refuse(
            "ad_group" if target.ad_group else "campaign",
            f"The {target.label} is removed on {target.platform_name}; a removed object cannot be changed.",
            "campaign_removed" if target.ad_group is None else "ad_group_removed",
        )
    if target.ad_group is not None and target.campaign.status == CampaignStatus.REMOVED:
        raise refuse(
            "campaign",
            f"Its campaign “{target.campaign.name}” is removed on {target.platform_name}; nothing under it changes.",
            "campaign_removed",
        )


def _budget_lives_here(target: Target, period: str) -> None:
    """Each platform keeps a budget in one place; point to that place."""
    name, platform = target.platform_name, target.account.platform
    fieldname = budget_field(period)
    if target.ad_group is not None:
        if platform == "google":
            raise refuse(
                fieldname,
                f"Google ad groups have no budget; change the budget of campaign “{target.campaign.name}”.",
                "no_budget_here",
            )
        if target.campaign.budget_level != BudgetLevel.AD_GROUP:
            raise refuse(
                fieldname,
                f"Campaign “{target.campaign.name}” holds the budget on {name} (campaign budget), so its ad sets "
                f"have none; change the campaign's budget instead.",
                "budget_on_campaign",
            )
    elif target.campaign.budget_level == BudgetLevel.AD_GROUP:
        raise refuse(
            fieldname,
            f"The budgets of campaign “{target.campaign.name}” live on its ad sets on {name}; change the budget "
            f"of one of its ad sets instead.",
            "budget_on_ad_sets",
        )
    other = Period.DAILY if period == Period.LIFETIME else Period.LIFETIME
    if target.budget(period) is None and target.budget(other) is not None:
        raise refuse(
            fieldname,
            f"The {target.label} has a {other} budget, not a {period} one, and {name} does not switch between "
            f"them; send {budget_field(other)} instead.",
            f"no_{period}_budget",
        )
    if target.budget(period) is None:
        raise refuse(
            fieldname,
            f"The {target.label} has no budget on {name} to change.",
            "no_budget_here",
        )


def budget_change_check(
    *,
    target: Target,
    new_micros: int,
    reason: str,
    period: str = Period.DAILY,
    confirm_large_change: bool = False,
    confirm_shared_budget: bool = False,
) -> None:
    """The guards that need no platform call, cheapest first; raises ValidationError on the first refusal."""
    account = target.account
    currency = account.currency_code
    fieldname = budget_field(period)
    _require_reason(reason, "budget")
    _require_not_removed(target)
    if new_micros <= 0:
        raise refuse(
            fieldname,
            f"The budget must be positive (got {new_micros} micros). To stop spending, pause the {target.noun}.",
            "not_positive",
        )
    # The floor before the unit: a rounding suggestion is then never one the platform refuses.
    floor = minimum_daily_budget_micros(account.platform, currency)
    if period == Period.DAILY and new_micros < floor:
        raise refuse(
            fieldname,
            f"{target.platform_name} takes no daily budget below {format_money(floor, currency)}; choose at "
            f"least that, or pause the {target.noun} to stop spending.",
            "below_platform_minimum",
        )
    unit = minor_unit_micros(currency)
    if new_micros % unit:
        down = new_micros - new_micros % unit
        up = down + unit
        suggestion = f"{up} ({format_money(up, currency)})"
        if down > 0:
            suggestion = f"{down} ({format_money(down, currency)}) or {suggestion}"
        raise refuse(
            fieldname,
            f"{new_micros} micros is not a whole number of {currency} minimum units ({unit:,} micros = "
            f"{format_money(unit, currency)}); use e.g. {suggestion}.",
            "not_minimum_unit_multiple",
        )
    _budget_lives_here(target, period)
    if period == Period.DAILY:
        budget_settings = selectors.account_budget_settings(account=account)
        cap = budget_settings.max_campaign_daily_budget_micros if budget_settings else None
        if cap is not None and new_micros > cap:
            raise refuse(
                fieldname,
                f"{format_money(new_micros, currency)} is above the account's cap of {format_money(cap, currency)} "
                f"per day; choose at most that, or raise the cap in the account's budget settings.",
                "above_account_cap",
            )
    else:
        _lifetime_rules(target, new_micros)
    old = target.budget(period)
    if old == new_micros:
        raise refuse(
            fieldname,
            f"The {period} budget is already {format_money(old, currency)}; there is nothing to change.",
            "unchanged",
        )
    ratio = setting("BUDGET_LARGE_CHANGE_RATIO")
    if old and abs(new_micros - old) > old * Decimal(ratio) and not confirm_large_change:
        change = Decimal(new_micros - old) / old * 100
        per = " per day" if period == Period.DAILY else " for its lifetime"
        raise refuse(
            "confirm_large_change",
            f"{format_money(old, currency)} → {format_money(new_micros, currency)}{per} is a {change:+.0f}% change, "
            f"beyond ±{Decimal(ratio) * 100:.0f}%; confirm the large change (API: confirm_large_change=true) "
            f"if it is intended.",
            "large_change_unconfirmed",
        )
    _require_nothing_pending(target)
    if target.ad_group is None and target.campaign.budget_is_shared and not confirm_shared_budget:
        siblings = selectors.shared_budget_siblings(campaign=target.campaign)
        names = ", ".join(f"“{c.name}”" for c in siblings) or "other campaigns"
        raise refuse(
            "confirm_shared_budget",
            f"This Google budget is shared with {names}: changing it changes their budget too. "
            f"Confirm the shared budget change (API: confirm_shared_budget=true) if that is intended.",
            "shared_budget_unconfirmed",
        )


def _lifetime_rules(target: Target, new_micros: int, view: PlatformView | None = None) -> None:
    """A lifetime budget needs an end, and cannot go below what is already spent."""
    obj = view or target.obj
    currency = target.account.currency_code
    if obj.end_time is None:
        raise refuse(
            "lifetime_budget_micros",
            f"The {target.label} has no end time on {target.platform_name}, and a lifetime budget needs one; "
            f"set its end date there first.",
            "lifetime_without_end",
        )
    lifetime = view.lifetime_budget_micros if view else target.budget(Period.LIFETIME)
    remaining = obj.budget_remaining_micros
    if lifetime is not None and remaining is not None:
        spent = max(lifetime - remaining, 0)
        if new_micros < spent:
            raise refuse(
                "lifetime_budget_micros",
                f"{format_money(spent, currency)} of the lifetime budget is already spent; a lifetime budget cannot "
                f"go below it. Choose at least {format_money(spent, currency)}, or pause the {target.noun}.",
                "below_amount_spent",
            )


def _require_nothing_pending(target: Target, pending: OptimizationRun | None = None) -> None:
    if pending is None:
        pending = selectors.pending_change_for(campaign=target.campaign, ad_group=target.ad_group)
    if pending is not None:
        raise pending_refusal(target, pending)


def pending_refusal(target: Target, pending: OptimizationRun | None = None) -> ValidationError:
    which = f"Change #{pending.pk}" if pending else "Another change"
    return refuse(
        "campaign" if target.ad_group is None else "ad_group",
        f"{which} of the {target.label} is still being pushed to {target.platform_name}; wait until it is applied "
        f"or failed.",
        "change_pending",
    )


def status_change_check(*, target: Target, new_status: str, reason: str) -> None:
    _require_reason(reason, "status")
    if new_status not in SETTABLE_STATUSES:
        raise refuse("status", f"Status must be “enabled” or “paused” (got “{new_status}”).", "invalid_choice")
    _require_not_removed(target)
    if target.obj.status == new_status:
        raise refuse("status", f"The {target.label} is already {new_status}; there is nothing to change.", "unchanged")
    _require_nothing_pending(target)


# --- The platform's current view ------------------------------------------------------------------


def read_platform(target: Target) -> PlatformView:
    """The target as the platform sees it now; platform errors propagate as they are."""
    account = target.account
    adapter = platform_for_account(account)
    if target.ad_group is not None:
        group = adapter.get_ad_group(account, target.ad_group.external_id)
        return PlatformView(
            status=group.status,
            daily_budget_micros=group.daily_budget_micros,
            lifetime_budget_micros=group.lifetime_budget_micros,
            budget_remaining_micros=group.budget_remaining_micros,
            end_time=group.end_time,
            budget_level=BudgetLevel.AD_GROUP,
        )
    info = adapter.get_campaign(account, target.campaign.external_id)
    level = BudgetLevel.AD_GROUP if info.budget_level in ("ad_set", "ad_group") else BudgetLevel.CAMPAIGN
    return PlatformView(
        status=info.status,
        daily_budget_micros=info.daily_budget_micros,
        lifetime_budget_micros=info.budget_micros,
        budget_remaining_micros=info.budget_remaining_micros,
        end_time=info.end_time,
        budget_level=level,
    )


def platform_view(target: Target) -> PlatformView:
    """Read the target before a request: unreachable → BudgetPlatformUnavailable; a refusal → 400."""
    try:
        return read_platform(target)
    except TransientError as exc:
        raise BudgetPlatformUnavailable(
            f"{target.platform_name} could not be reached to read the {target.label} ({exc}); nothing was changed, "
            f"try again in a minute."
        ) from exc
    except PlatformError as exc:
        raise refuse(
            "campaign" if target.ad_group is None else "ad_group",
            f"{target.platform_name} refused to show the {target.label}: {exc}. Nothing was changed.",
            "platform_refused",
        ) from exc


def _unchanged_on_platform_budget(target: Target, view: PlatformView, period: str) -> None:
    name, currency = target.platform_name, target.account.currency_code
    if view.status == CampaignStatus.REMOVED:
        raise refuse("campaign", f"The {target.label} was removed on {name}; it cannot be changed.", "campaign_removed")
    if target.ad_group is None and view.budget_level != target.campaign.budget_level:
        raise refuse(
            budget_field(period),
            f"Where the budget of campaign “{target.campaign.name}” lives changed on {name} since the last sync; "
            f"nothing was changed. Sync the account and decide again.",
            "changed_on_platform",
        )
    there, here = view.budget(period), target.budget(period)
    if there != here:
        raise refuse(
            budget_field(period),
            f"The budget changed on {name} since the last sync: it is {format_money(there, currency)} there, the "
            f"last sync saw {format_money(here, currency)}. Nothing was changed; sync the account and decide again "
            f"from the current value.",
            "changed_on_platform",
        )


def _unchanged_on_platform_status(target: Target, view: PlatformView) -> None:
    if view.status != target.obj.status:
        raise refuse(
            "status",
            f"The {target.label} is {view.status} on {target.platform_name} now, the last sync saw "
            f"{target.obj.status}. Nothing was changed; sync the account and decide again.",
            "changed_on_platform",
        )


# --- Requests -------------------------------------------------------------------------------------


def budget_change(
    *,
    campaign: Campaign | None = None,
    ad_group: AdGroup | None = None,
    new_micros: int,
    reason: str,
    actor: Any,
    source: str,
    period: str = Period.DAILY,
    confirm_large_change: bool = False,
    confirm_shared_budget: bool = False,
) -> OptimizationRun:
    """Check a new budget against every guard, record it, and push it after commit.

    Raises ``ValidationError`` (one field, one message saying how to fix it) when a guard
    refuses, and ``BudgetPlatformUnavailable`` when the platform cannot be read first.
    """
    target = Target.of(campaign=campaign, ad_group=ad_group)
    budget_change_check(
        target=target,
        new_micros=new_micros,
        reason=reason,
        period=period,
        confirm_large_change=confirm_large_change,
        confirm_shared_budget=confirm_shared_budget,
    )
    view = platform_view(target)
    _unchanged_on_platform_budget(target, view, period)
    run = _record(
        target,
        kind=Kind.BUDGET,
        budget_period=period,
        old_budget_micros=target.budget(period),
        new_budget_micros=new_micros,
        reason=reason,
        actor=actor,
        source=source,
        confirmed_large_change=confirm_large_change,
        confirmed_shared_budget=confirm_shared_budget,
    )
    logger.info(
        "budget change requested",
        extra={"run_id": run.pk, "campaign_id": str(target.campaign.pk), "source": source, "new_micros": new_micros},
    )
    return run


def status_change(
    *,
    campaign: Campaign | None = None,
    ad_group: AdGroup | None = None,
    new_status: str,
    reason: str,
    actor: Any,
    source: str,
) -> OptimizationRun:
    """Pause or enable a campaign or ad group / ad set through the same guarded, audited path."""
    target = Target.of(campaign=campaign, ad_group=ad_group)
    status_change_check(target=target, new_status=new_status, reason=reason)
    _unchanged_on_platform_status(target, platform_view(target))
    run = _record(
        target,
        kind=Kind.STATUS,
        budget_period="",
        old_status=target.obj.status,
        new_status=new_status,
        reason=reason,
        actor=actor,
        source=source,
    )
    logger.info(
        "status change requested",
        extra={"run_id": run.pk, "campaign_id": str(target.campaign.pk), "source": source, "status": new_status},
    )
    return run


def _record(target: Target, *, actor: Any, reason: str, **values: Any) -> OptimizationRun:
    try:
        with transaction.atomic():
            run = OptimizationRun.objects.create(
                level=target.level,
                campaign=target.campaign,
                ad_group=target.ad_group,
                reason=reason.strip(),
                requested_by=actor if getattr(actor, "pk", None) else None,
                requested_by_name=actor_name(actor),
                status=OptimizationRun.Status.PENDING,
                **values,
            )
    except IntegrityError:
        raise pending_refusal(target) from None
    enqueue_push_on_commit(run)
    return run


# --- Previews -------------------------------------------------------------------------------------


def _preview(target: Target, change: dict[str, Any], check, ask_platform) -> ChangePreview:
    try:
        check()
        view = platform_view(target)
        ask_platform(view)
    except ValidationError as exc:
        errors = [
            {"code": error.code or "invalid", "message": " ".join(error.messages)}
            for errors in exc.error_dict.values()
            for error in errors
        ]
        return ChangePreview(valid=False, errors=errors, change=change)
    except PlatformError as exc:
        if isinstance(exc, TransientError):
            raise BudgetPlatformUnavailable(
                f"{target.platform_name} could not be reached to check the change ({exc}); try again in a minute."
            ) from exc
        return ChangePreview(
            valid=False,
            errors=[{"code": exc.code or "platform_refused", "message": f"{target.platform_name}: {exc.message}"}],
            change=change,
        )
    return ChangePreview(valid=True, change=change)


def budget_change_preview(
    *,
    campaign: Campaign | None = None,
    ad_group: AdGroup | None = None,
    new_micros: int,
    reason: str,
    period: str = Period.DAILY,
    confirm_large_change: bool = False,
    confirm_shared_budget: bool = False,
) -> ChangePreview:
    """Every guard, then the platform's own validation of the change; writes nothing."""
    target = Target.of(campaign=campaign, ad_group=ad_group)
    change = _describe(target, kind=Kind.BUDGET, period=period, new_budget=new_micros)

    def check() -> None:
        budget_change_check(
            target=target,
            new_micros=new_micros,
            reason=reason,
            period=period,
            confirm_large_change=confirm_large_change,
            confirm_shared_budget=confirm_shared_budget,
        )

    def ask_platform(view: PlatformView) -> None:
        _unchanged_on_platform_budget(target, view, period)
        _send_budget(target, period, new_micros, validate_only=True)

    return _preview(target, change, check, ask_platform)


def status_change_preview(
    *, campaign: Campaign | None = None, ad_group: AdGroup | None = None, new_status: str, reason: str
) -> ChangePreview:
    target = Target.of(campaign=campaign, ad_group=ad_group)
    change = _describe(target, kind=Kind.STATUS, new_status=new_status)

    def ask_platform(view: PlatformView) -> None:
        _unchanged_on_platform_status(target, view)
        _send_status(target, new_status, validate_only=True)

    return _preview(
        target, change, lambda: status_change_check(target=target, new_status=new_status, reason=reason), ask_platform
    )


def _send_budget(target: Target, period: str, micros: int, *, validate_only: bool) -> BudgetUpdate:
    amounts = {budget_field(period): micros}
    return platform_for_account(target.account).update_budget(
        target.account, target.platform_target(), validate_only=validate_only, **amounts
    )


def _send_status(target: Target, status: str, *, validate_only: bool) -> StatusUpdate:
    return platform_for_account(target.account).update_status(
        target.account, target.platform_target(), status, validate_only=validate_only
    )


# --- Pushing --------------------------------------------------------------------------------------


def enqueue_push_on_commit(run: OptimizationRun) -> None:
    # A broker outage must not fail the request: the run stays pending and the sweeper re-sends it.
    transaction.on_commit(lambda: enqueue.send_quietly(enqueue.PUSH_BUDGET_CHANGE, run.pk))


def change_push(*, run: OptimizationRun) -> OptimizationRun:
    """Push a pending change to the platform; idempotent, so a redelivered task changes nothing.

    The platform is read first: already at the new value → applied (an earlier attempt was
    confirmed but its outcome never got saved); moved away from the value the request started
    from → failed, nothing sent. Transient platform errors propagate for the task to retry; any
    other refusal fails the run with the platform's message and leaves the local value as it was.
    """
    run = OptimizationRun.objects.select_related("campaign__account", "ad_group").get(pk=run.pk)
    if run.status != OptimizationRun.Status.PENDING:
        return run
    OptimizationRun.objects.filter(pk=run.pk).update(push_attempts=F("push_attempts") + 1, updated_at=timezone.now())
    target = Target(campaign=run.campaign, ad_group=run.ad_group)
    name, currency = target.platform_name, target.account.currency_code
    try:
        view = read_platform(target)
        if run.kind == Kind.STATUS:
            if view.status == run.new_status:
                return _mark_applied(run, {"status": view.status, "already_set": True})
            if view.status != run.old_status:
                return _mark_failed(
                    run,
                    f"Not pushed: the {target.label} became {view.status} on {name} after this change was requested "
                    f"(it assumed {run.old_status}). Sync and decide again.",
                    {"platform_status": view.status, "code": "changed_on_platform"},
                )
            update = _send_status(target, run.new_status, validate_only=False)
            return _mark_applied(
                run, {"status": update.status, "resource": update.resource, "raw": _jsonable(update.raw)}
            )
        period = run.budget_period or Period.DAILY
        there = view.budget(period)
        if there == run.new_budget_micros:
            return _mark_applied(run, {budget_field(period): there, "already_set": True})
        if there != run.old_budget_micros:
            return _mark_failed(
                run,
                f"Not pushed: the budget changed on {name} after this change was requested (it is "
                f"{format_money(there, currency)} there, the request assumed "
                f"{format_money(run.old_budget_micros, currency)}). Sync and decide again.",
                {f"platform_{budget_field(period)}": there, "code": "changed_on_platform"},
            )
        # budget_change always records the new budget; only status runs leave it empty.
        assert run.new_budget_micros is not None
        budget_update = _send_budget(target, period, run.new_budget_micros, validate_only=False)
        confirmed = (
            budget_update.lifetime_budget_micros if period == Period.LIFETIME else budget_update.daily_budget_micros
        )
        return _mark_applied(
            run,
            {budget_field(period): confirmed, "resource": budget_update.resource, "raw": _jsonable(budget_update.raw)},
        )
    except TransientError:
        raise  # the task retries with backoff
    except PlatformError as exc:
        return _mark_failed(
            run,
            f"{name} refused the change: {exc.message}",
            {"code": exc.code, "message": exc.message, "request_id": exc.request_id, "details": _jsonable(exc.details)},
        )


def _mark_applied(run: OptimizationRun, response: dict[str, Any]) -> OptimizationRun:
    """The platform confirmed: record it, and write the confirmed value locally in the same transaction."""
    now = timezone.now()
    target = Target(campaign=run.campaign, ad_group=run.ad_group)
    with transaction.atomic():
        claimed = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
            status=OptimizationRun.Status.APPLIED,
            applied_at=now,
            finished_at=now,
            next_attempt_at=None,
            error_message="",
            updated_at=now,
            platform_response=response,
        )
        if claimed:
            _write_confirmed(run, target, now)
            transaction.on_commit(campaign_cache_invalidate)
    run.refresh_from_db()
    logger.info(f"{run.kind} change applied", extra={"run_id": run.pk, "campaign_id": str(run.campaign_id)})
    return run


def _write_confirmed(run: OptimizationRun, target: Target, now) -> None:
    model = AdGroup if target.ad_group is not None else Campaign
    affected = model.objects.filter(pk=target.obj.pk)
    if run.kind == Kind.STATUS:
        affected.update(status=run.new_status, updated_at=now)
        return
    if run.budget_period == Period.LIFETIME:
        column = "lifetime_budget_micros" if target.ad_group is not None else "budget_micros"
        affected.update(**{column: run.new_budget_micros, "updated_at": now})
        return
    campaign = target.campaign
    if target.ad_group is None and campaign.budget_is_shared and campaign.budget_external_id:
        # The budget is one object on the platform: every campaign on it changed.
        affected = Campaign.objects.filter(
            account_id=campaign.account_id, budget_external_id=campaign.budget_external_id
        )
    affected.update(daily_budget_micros=run.new_budget_micros, updated_at=now)


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
    logger.warning(f"{run.kind} change failed", extra={"run_id": run.pk, "code": response.get("code", "")})
    return run


def change_push_retry_at(*, run: OptimizationRun, delay_seconds: float, error: Exception) -> None:
    OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
        error_message=f"Platform unavailable, retrying in {delay_seconds:.0f}s: {error}"[:4000],
        updated_at=timezone.now(),
    )


def change_push_give_up(*, run: OptimizationRun, error: Exception) -> OptimizationRun:
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
