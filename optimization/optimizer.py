"""The budget optimizer: pure functions from an account's synced numbers to budget proposals.

Nothing here reads the database or calls a platform, so every rule is testable with plain
data. Money is integer micros; proposals are whole minor units of the account currency.

Two strategies, one proposal per campaign per run:

* **Pacing** to a monthly cap: month-to-date spend against the elapsed share of the month.
  Outside a band (wide early in the month, tight at its end) every eligible budget is scaled
  by the factor that would land the month on the cap. Pacing wins when it fires: the cap
  is a hard limit, performance is not.
* **Reallocation** toward a target CPA (or ROAS when no CPA is set): budget moves from
  campaigns doing worse than the target to those doing better; the account's total daily
  budget stays exactly the same.

Guardrails apply to every proposal: at most ±max_daily_change of a budget, never below the
minimum budget nor above the account's cap, and no change at all on campaigns that are
not enabled, share their budget, have no daily budget, changed already today, or have too
few conversions to judge.

A budget a campaign does not spend is never cut: one spending, on average over the lookback,
less than ``min_spend_share_to_cut`` of its daily budget is held back by something else (bids,
audience, approvals), so a cut would save nothing. In a reallocation the money "taken" from it
would be money it never spent, handed to campaigns that do spend: the total budget unchanged,
the total spend up. Such a campaign may still receive budget; pacing counts it at its budget.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from platforms.base import format_money

REALLOCATION = "reallocation"
PACING = "pacing"

# Pacing band: ± this share of the expected spend on day one, narrowing linearly to the
# minimum on the last day, when there is no time left to correct a drift.
PACING_BAND_START = Decimal("0.20")
PACING_BAND_END = Decimal("0.05")


@dataclass(frozen=True)
class CampaignStats:
    campaign_id: str
    name: str
    status: str  # enabled | paused | removed
    daily_budget_micros: int | None
    cost_micros: int  # over the lookback window
    conversions: Decimal  # over the lookback window
    conversion_value_micros: int  # over the lookback window
    budget_is_shared: bool = False
    changed_today: bool = False  # a budget change was applied or is pending today


@dataclass(frozen=True)
class AccountSnapshot:
    account_id: int
    currency_code: str
    minor_unit_micros: int
    today: date  # in the account's time zone
    lookback_days: int
    campaigns: Sequence[CampaignStats]
    target_cpa_micros: int | None = None
    target_roas: Decimal | None = None
    monthly_budget_micros: int | None = None
    # Spend from the 1st of the month through yesterday: today's spend is still growing.
    month_spend_through_yesterday_micros: int = 0


@dataclass(frozen=True)
class Guardrails:
    max_daily_change: Decimal = Decimal("0.20")
    min_daily_budget_micros: int = 1_000_000
    min_conversions: Decimal = Decimal("10")
    max_daily_budget_micros: int | None = None  # the account's cap
    # Below this share of its budget spent per day (lookback average), a budget is not cut.
    # Platforms spend a budget-limited campaign close to its budget on average (Google may go
    # up to 2x on a day, Meta varies about 25%), so three quarters leaves room for that noise.
    min_spend_share_to_cut: Decimal = Decimal("0.75")


@dataclass(frozen=True)
class Proposal:
    campaign_id: str
    kind: str  # reallocation | pacing
    old_budget_micros: int
    new_budget_micros: int
    reason: str

    @property
    def change_micros(self) -> int:
        return self.new_budget_micros - self.old_budget_micros


def propose(snapshot: AccountSnapshot, guardrails: Guardrails) -> list[Proposal]:
    """Every proposal for one account, pacing first; each campaign appears at most once."""
    pacing = propose_pacing(snapshot, guardrails)
    if pacing:
        return pacing
    return propose_reallocation(snapshot, guardrails)


# --- Eligibility --------------------------------------------------------------------------------


def ineligibility(campaign: CampaignStats, guardrails: Guardrails) -> str | None:
    """Why the optimizer must leave this campaign alone, or None when it may change it."""
    if campaign.status != "enabled":
        return f"{campaign.status}"
    if not campaign.daily_budget_micros:
        return "no daily budget"
    if campaign.budget_is_shared:
        return "shares its budget with other campaigns"
    if campaign.changed_today:
        return "budget already changed today"
    if campaign.conversions < guardrails.min_conversions:
        return f"{campaign.conversions} conversions, fewer than the {guardrails.min_conversions} needed to judge"
    return None


def eligible_campaigns(snapshot: AccountSnapshot, guardrails: Guardrails) -> list[CampaignStats]:
    return sorted((c for c in snapshot.campaigns if ineligibility(c, guardrails) is None), key=lambda c: c.campaign_id)


def spends_its_budget(campaign: CampaignStats, snapshot: AccountSnapshot, guardrails: Guardrails) -> bool:
    """Whether the campaign spends enough of its daily budget for a cut to save money."""
    if not campaign.daily_budget_micros or snapshot.lookback_days <= 0:
        return False
    average = Decimal(campaign.cost_micros) / snapshot.lookback_days
    return average >= Decimal(campaign.daily_budget_micros) * guardrails.min_spend_share_to_cut


def left_alone(
    snapshot: AccountSnapshot, guardrails: Guardrails, proposals: Sequence[Proposal]
) -> list[tuple[CampaignStats, str]]:
    """The campaigns no proposal changes (removed ones aside), each with why, for whoever reviews a run."""
    proposed = {p.campaign_id for p in proposals}
    found = []
    for campaign in sorted(snapshot.campaigns, key=lambda c: (c.name, c.campaign_id)):
        if campaign.campaign_id in proposed or campaign.status == "removed":
            continue
        why = ineligibility(campaign, guardrails)
        if why is None and not spends_its_budget(campaign, snapshot, guardrails):
            average = Decimal(campaign.cost_micros) / snapshot.lookback_days
            why = (
                f"spends {format_money(average, snapshot.currency_code)}/day of its {format_money(campaign.daily_budget_micros, snapshot.currency_code)} "
                f"budget: not cut, a cut would save nothing"
            )
        found.append((campaign, why or "on target, or no room within the guardrails"))
    return found


# --- Reallocation -------------------------------------------------------------------------------


def propose_reallocation(snapshot: AccountSnapshot, guardrails: Guardrails) -> list[Proposal]:
    """Move budget from campaigns worse than the target to better ones; the total is unchanged."""
    unit = snapshot.minor_unit_micros
    use_cpa = snapshot.target_cpa_micros is not None
    if not use_cpa and not snapshot.target_roas:
        return []
    cut_units: dict[str, int] = {}
    room_units: dict[str, int] = {}
    performance: dict[str, str] = {}
    for campaign in eligible_campaigns(snapshot, guardrails):
        budget = campaign.daily_budget_micros
        assert budget is not None  # eligibility guarantees it
        # How much worse than the target, as a share of the budget to cut (0 when better).
        if use_cpa:
            if campaign.conversions <= 0:
                continue  # no conversions: no CPA to judge
            cpa = Decimal(campaign.cost_micros) / campaign.conversions
            assert snapshot.target_cpa_micros is not None  # use_cpa says so
            target = Decimal(snapshot.target_cpa_micros)
            worse_by = 1 - target / cpa if cpa > target else Decimal(0)
            better = cpa < target
            performance[campaign.campaign_id] = (
                f"CPA {format_money(cpa, snapshot.currency_code)} over {snapshot.lookback_days} days "
                f"({format_money(campaign.cost_micros, snapshot.currency_code)} / {_number(campaign.conversions)} conversions) "
                f"vs target {format_money(target, snapshot.currency_code)}"
            )
        else:
            roas = Decimal(campaign.conversion_value_micros) / campaign.cost_micros if campaign.cost_micros else None
            assert snapshot.target_roas is not None  # checked above: no CPA target means a ROAS one
            target = snapshot.target_roas
            if roas is None:
                continue  # nothing spent: no ROAS to judge
            worse_by = 1 - roas / target if roas < target else Decimal(0)
            better = roas > target
            performance[campaign.campaign_id] = (
                f"ROAS {_number(roas)} over {snapshot.lookback_days} days "
                f"({format_money(campaign.conversion_value_micros, snapshot.currency_code)} value / "
                f"{format_money(campaign.cost_micros, snapshot.currency_code)} cost) vs target {_number(target)}"
            )
        if worse_by > 0:
            if not spends_its_budget(campaign, snapshot, guardrails):
                continue  # its unspent budget is no money to move
            share = min(worse_by, guardrails.max_daily_change)
            floor_room = budget - guardrails.min_daily_budget_micros
            cut = _floor_units(min(budget * share, Decimal(max(floor_room, 0))), unit)
            if cut > 0:
                cut_units[campaign.campaign_id] = cut
        elif better:
            room = Decimal(budget) * guardrails.max_daily_change
            if guardrails.max_daily_budget_micros is not None:
                room = min(room, Decimal(max(guardrails.max_daily_budget_micros - budget, 0)))
            grow = _floor_units(room, unit)
            if grow > 0:
                room_units[campaign.campaign_id] = grow

    moved = min(sum(cut_units.values()), sum(room_units.values()))
    if moved == 0:
        return []
    takes = _apportion(moved, cut_units)
    gives = _apportion(moved, room_units)
    # Only eligible campaigns take or give, and eligibility needs a daily budget.
    budgets = {c.campaign_id: c.daily_budget_micros for c in snapshot.campaigns if c.daily_budget_micros is not None}
    moved_text = format_money(moved * unit, snapshot.currency_code)
    proposals = []
    for campaign_id, units in sorted(takes.items()):
        if units:
            old = budgets[campaign_id]
            new = old - units * unit
            proposals.append(
                Proposal(
                    campaign_id,
                    REALLOCATION,
                    old,
                    new,
                    f"{performance[campaign_id]}: worse than target, so "
                    f"{format_money(old, snapshot.currency_code)} → {format_money(new, snapshot.currency_code)}/day ({_pct(new, old)}); "
                    f"{moved_text}/day in all moves to campaigns better than target, total unchanged.",
                )
            )
    for campaign_id, units in sorted(gives.items()):
        if units:
            old = budgets[campaign_id]
            new = old + units * unit
            proposals.append(
                Proposal(
                    campaign_id,
                    REALLOCATION,
                    old,
                    new,
                    f"{performance[campaign_id]}: better than target, so "
                    f"{format_money(old, snapshot.currency_code)} → {format_money(new, snapshot.currency_code)}/day ({_pct(new, old)}); "
                    f"receives part of the {moved_text}/day taken from campaigns worse than target.",
                )
            )
    return proposals


# --- Pacing -------------------------------------------------------------------------------------


def pacing_band(day_of_month: int, days_in_month: int) -> Decimal:
    """The tolerated deviation from the expected spend on a day: it tightens toward month end."""
    if days_in_month <= 1:
        return PACING_BAND_END
    progress = Decimal(day_of_month - 1) / Decimal(days_in_month - 1)
    return PACING_BAND_START - (PACING_BAND_START - PACING_BAND_END) * progress


def propose_pacing(snapshot: AccountSnapshot, guardrails: Guardrails) -> list[Proposal]:
    """Scale the eligible budgets so the month lands on the monthly cap, when spend drifts outside the band."""
    cap = snapshot.monthly_budget_micros
    if not cap:
        return []
    today = snapshot.today
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    elapsed_days = today.day - 1  # complete days: spend through yesterday
    if elapsed_days == 0:
        return []  # nothing spent yet to judge by
    spent = snapshot.month_spend_through_yesterday_micros
    expected = Decimal(cap) * elapsed_days / days_in_month
    ratio = Decimal(spent) / expected
    band = pacing_band(today.day, days_in_month)
    if abs(ratio - 1) <= band:
        return []

    unit = snapshot.minor_unit_micros
    eligible = eligible_campaigns(snapshot, guardrails)
    if ratio > 1:
        # Overspending means cuts: a campaign not spending its budget keeps it (a cut would
        # save nothing) and counts below as fixed, like any campaign the optimizer leaves alone.
        eligible = [c for c in eligible if spends_its_budget(c, snapshot, guardrails)]
    eligible_ids = {c.campaign_id for c in eligible}
    # Campaigns the optimizer may not touch still spend their budgets.
    fixed_daily = sum(
        c.daily_budget_micros or 0
        for c in snapshot.campaigns
        if c.status == "enabled" and c.campaign_id not in eligible_ids
    )
    eligible_daily = sum(c.daily_budget_micros or 0 for c in eligible)
    if eligible_daily == 0:
        return []
    days_left = days_in_month - elapsed_days  # today included
    needed_daily = Decimal(max(cap - spent, 0)) / days_left
    wanted_factor = (needed_daily - fixed_daily) / eligible_daily
    low, high = 1 - guardrails.max_daily_change, 1 + guardrails.max_daily_change
    factor = min(max(wanted_factor, low), high)
    # Never raise budgets while overspending nor cut them while underspending: the budgets
    # may already have been corrected, and the band will be judged again tomorrow.
    factor = min(factor, Decimal(1)) if ratio > 1 else max(factor, Decimal(1))
    if factor == 1:
        return []
    state = "over" if ratio > 1 else "under"
    situation = (
        f"Month-to-date spend {format_money(spent, snapshot.currency_code)} after {elapsed_days} of {days_in_month} days is "
        f"{_pct_ratio(ratio)} of the {format_money(expected, snapshot.currency_code)} expected for the "
        f"{format_money(cap, snapshot.currency_code)} monthly cap ({state}spending beyond the ±{_pct_share(band)} band); "
        f"landing on the cap needs {format_money(needed_daily, snapshot.currency_code)}/day for the remaining {days_left} days"
    )
    proposals = []
    for campaign in eligible:
        old = campaign.daily_budget_micros
        assert old is not None
        target = Decimal(old) * factor
        if factor < 1:
            # Rounded toward the old budget, so the cut never exceeds the guardrail.
            new = max(_ceil_units(target, unit) * unit, guardrails.min_daily_budget_micros)
            if new >= old:
                continue
        else:
            new = _floor_units(target, unit) * unit
            if guardrails.max_daily_budget_micros is not None:
                new = min(new, guardrails.max_daily_budget_micros)
            if new <= old:
                continue
        limited = f" (limited to the ±{_pct_share(guardrails.max_daily_change)} daily guardrail)"
        proposals.append(
            Proposal(
                campaign.campaign_id,
                PACING,
                old,
                new,
                f"{situation}; scaling budgets by {_number(factor)}"
                f"{limited if factor != wanted_factor else ''}: "
                f"{format_money(old, snapshot.currency_code)} → {format_money(new, snapshot.currency_code)}/day.",
            )
        )
    return proposals


# --- Arithmetic and wording --------------------------------------------------------------------


def _floor_units(micros: Decimal | int, unit: int) -> int:
    """Whole minor units in ``micros``, rounded down (never proposes a fraction of a cent)."""
    return int((Decimal(micros) / unit).to_integral_value(rounding=ROUND_FLOOR))


def _ceil_units(micros: Decimal | int, unit: int) -> int:
    return int((Decimal(micros) / unit).to_integral_value(rounding=ROUND_CEILING))


def _apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` units in proportion to ``weights`` (largest remainder), none above its weight.

    ``total`` never exceeds the sum of weights, so every share fits its weight; ties go to the
    lower id, which keeps the result deterministic.
    """
    weight_sum = sum(weights.values())
    shares = {key: total * weight // weight_sum for key, weight in weights.items()}
    remainders = sorted(weights, key=lambda key: (-(total * weights[key] % weight_sum), key))
    left = total - sum(shares.values())
    for key in remainders:
        if left == 0:
            break
        if shares[key] < weights[key]:
            shares[key] += 1
            left -= 1
    return shares


def _number(value: Decimal) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01')).normalize():f}"


def _pct(new: int, old: int) -> str:
    return f"{(Decimal(new - old) / old * 100):+.1f}%"


def _pct_ratio(ratio: Decimal) -> str:
    return f"{ratio * 100:.1f}%"


def _pct_share(share: Decimal) -> str:
    return f"{share * 100:.1f}%"
