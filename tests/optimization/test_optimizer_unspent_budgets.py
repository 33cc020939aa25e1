"""The optimizer never cuts a budget a campaign does not spend: such a cut saves nothing, and in a
reallocation it would hand money never spent to campaigns that do spend it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from optimization.optimizer import PACING, AccountSnapshot, Guardrails, left_alone, propose, spends_its_budget
from tests.optimization.test_optimizer import CENT, USD, by_id, campaign

GUARDRAILS = Guardrails(max_daily_change=Decimal("0.20"), min_daily_budget_micros=1 * USD, min_conversions=Decimal(10))


def snapshot(campaigns, **kwargs) -> AccountSnapshot:
    defaults = {
        "account_id": 1,
        "currency_code": "USD",
        "minor_unit_micros": CENT,
        "today": date(2026, 11, 16),
        "lookback_days": 14,
    }
    return AccountSnapshot(campaigns=campaigns, **{**defaults, **kwargs})


def test_a_campaign_spends_its_budget_from_three_quarters_of_it_on_average():
    shot = snapshot([])
    assert spends_its_budget(campaign("x", 100, cost=1050, conversions=20), shot, GUARDRAILS)  # 75.0/day
    assert not spends_its_budget(campaign("x", 100, cost=1049.99, conversions=20), shot, GUARDRAILS)
    assert not spends_its_budget(campaign("x", None, cost=1400, conversions=20), shot, GUARDRAILS)
    stricter = Guardrails(min_spend_share_to_cut=Decimal("0.9"))
    assert not spends_its_budget(campaign("x", 100, cost=1260 - 1, conversions=20), shot, stricter)


def test_reallocation_takes_nothing_from_a_worse_campaign_that_leaves_its_budget_unspent():
    campaigns = [
        campaign("idle", 100, cost=420, conversions=6 * 2),  # CPA 35 > 25, but spends 30/day of 100
        campaign("worse", 100, cost=1400, conversions=40),  # CPA 35 > 25, spends its budget
        campaign("better", 100, cost=1400, conversions=70),  # CPA 20 < 25
    ]

    proposals = propose(snapshot(campaigns, target_cpa_micros=25 * USD), GUARDRAILS)

    moves = by_id(proposals)
    assert "idle" not in moves
    # Only what "worse" really spends moves: 20% of its budget, to "better"; the total stays.
    assert moves == {"worse": (100 * USD, 80 * USD), "better": (100 * USD, 120 * USD)}
    assert sum(p.change_micros for p in proposals) == 0


def test_with_only_unspent_budgets_to_take_from_reallocation_proposes_nothing():
    campaigns = [
        campaign("idle", 100, cost=700, conversions=14),  # CPA 50 vs 25, spends half its budget
        campaign("better", 100, cost=1400, conversions=70),
    ]

    assert propose(snapshot(campaigns, target_cpa_micros=25 * USD), GUARDRAILS) == []


def test_pacing_an_overspending_account_cuts_only_the_budgets_being_spent():
    campaigns = [
        campaign("a", 50, cost=700, conversions=20),  # spends 50/day
        campaign("idle", 50, cost=140, conversions=20),  # spends 10/day of 50
    ]
    # 15 of 30 days: 1,500 expected of a 3,000 cap, 1,800 spent: overspending beyond the band.
    proposals = propose(
        snapshot(campaigns, monthly_budget_micros=3000 * USD, month_spend_through_yesterday_micros=1800 * USD),
        GUARDRAILS,
    )

    assert {p.kind for p in proposals} == {PACING}
    assert set(by_id(proposals)) == {"a"}
    assert by_id(proposals)["a"] == (50 * USD, 40 * USD)  # limited to the 20% daily guardrail


def test_pacing_an_underspending_account_may_still_raise_a_budget_it_does_not_spend():
    campaigns = [campaign("a", 50, cost=700, conversions=20), campaign("idle", 50, cost=140, conversions=20)]
    proposals = propose(
        snapshot(campaigns, monthly_budget_micros=3000 * USD, month_spend_through_yesterday_micros=1000 * USD),
        GUARDRAILS,
    )
    assert set(by_id(proposals)) == {"a", "idle"}
    assert all(p.change_micros > 0 for p in proposals)


def test_a_run_says_why_each_campaign_it_leaves_alone_is_left_alone():
    campaigns = [
        campaign("idle", 100, cost=420, conversions=12),
        campaign("worse", 100, cost=1400, conversions=40),
        campaign("better", 100, cost=1400, conversions=70),
        campaign("paused", 100, cost=0, conversions=0, status="paused"),
        campaign("gone", 100, cost=0, conversions=0, status="removed"),
    ]
    shot = snapshot(campaigns, target_cpa_micros=25 * USD)

    why = {c.campaign_id: reason for c, reason in left_alone(shot, GUARDRAILS, propose(shot, GUARDRAILS))}

    assert why == {
        "idle": "spends 30.00 USD/day of its 100.00 USD budget: not cut, a cut would save nothing",
        "paused": "paused",
    }
