"""The optimizer on fixed numbers: exact proposals, and every guardrail holds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from optimization.optimizer import (
    PACING,
    REALLOCATION,
    AccountSnapshot,
    CampaignStats,
    Guardrails,
    Proposal,
    pacing_band,
    propose,
)

USD = 1_000_000
CENT = 10_000


def campaign(campaign_id: str, budget: float | None, cost: float, conversions: float, **kwargs) -> CampaignStats:
    return CampaignStats(
        campaign_id=campaign_id,
        name=f"Campaign {campaign_id}",
        status=kwargs.pop("status", "enabled"),
        daily_budget_micros=None if budget is None else int(budget * USD),
        cost_micros=int(cost * USD),
        conversions=Decimal(str(conversions)),
        conversion_value_micros=int(kwargs.pop("value", 0) * USD),
        **kwargs,
    )


def snapshot(campaigns, **kwargs) -> AccountSnapshot:
    defaults = {
        "account_id": 1,
        "currency_code": "USD",
        "minor_unit_micros": CENT,
        "today": date(2026, 11, 16),
        "lookback_days": 14,
    }
    return AccountSnapshot(campaigns=campaigns, **{**defaults, **kwargs})


GUARDRAILS = Guardrails(max_daily_change=Decimal("0.20"), min_daily_budget_micros=1 * USD, min_conversions=Decimal(10))

# Target CPA 50 USD. Two worse than target, two better, one on target, and one of each guardrail.
CPA_CAMPAIGNS = [
    campaign("a", 100, cost=1400, conversions=20),  # CPA 70: 28.6% worse → cut capped at 20%
    campaign("b", 100, cost=1000, conversions=25),  # CPA 40: better → may grow up to 20.00
    campaign("c", 50, cost=500, conversions=10),  # CPA 50: on target → unchanged
    campaign("d", 100, cost=1100, conversions=20),  # CPA 55: 9.09% worse → cut 9.09
    campaign("e", 200, cost=500, conversions=20),  # CPA 25: better → may grow up to 40.00
    campaign("paused", 100, cost=2000, conversions=20, status="paused"),
    campaign("removed", 100, cost=2000, conversions=20, status="removed"),
    campaign("few", 100, cost=900, conversions=5),  # too few conversions to judge
    campaign("shared", 100, cost=2000, conversions=20, budget_is_shared=True),
    campaign("moved", 100, cost=2000, conversions=20, changed_today=True),
    campaign("lifetime", None, cost=2000, conversions=20),
]


def by_id(proposals: list[Proposal]) -> dict[str, tuple[int, int]]:
    return {p.campaign_id: (p.old_budget_micros, p.new_budget_micros) for p in proposals}


def assert_guardrails(proposals: list[Proposal], guardrails: Guardrails, *, unit: int = CENT) -> None:
    assert len({p.campaign_id for p in proposals}) == len(proposals), "one proposal per campaign"
    for p in proposals:
        assert abs(p.change_micros) <= p.old_budget_micros * guardrails.max_daily_change
        assert p.new_budget_micros >= guardrails.min_daily_budget_micros
        assert p.new_budget_micros % unit == 0
        if guardrails.max_daily_budget_micros is not None and p.change_micros > 0:
            assert p.new_budget_micros <= guardrails.max_daily_budget_micros
        assert p.campaign_id not in {"paused", "removed", "few", "shared", "moved", "lifetime"}


def test_reallocation_toward_target_cpa_moves_budget_from_worse_to_better_with_the_total_unchanged():
    proposals = propose(snapshot(CPA_CAMPAIGNS, target_cpa_micros=50 * USD), GUARDRAILS)

    # 29.09 USD moves: b and e receive it in proportion to their room (20 : 40), largest remainder to b.
    assert by_id(proposals) == {
        "a": (100 * USD, 80 * USD),
        "d": (100 * USD, 90_910_000),
        "b": (100 * USD, 109_700_000),
        "e": (200 * USD, 219_390_000),
    }
    assert sum(p.change_micros for p in proposals) == 0
    assert {p.kind for p in proposals} == {REALLOCATION}
    assert_guardrails(proposals, GUARDRAILS)
    reason_a = next(p.reason for p in proposals if p.campaign_id == "a")
    assert "CPA 70.00 USD" in reason_a and "1,400.00 USD / 20 conversions" in reason_a
    assert "target 50.00 USD" in reason_a and "100.00 USD → 80.00 USD/day (-20.0%)" in reason_a
    assert "29.09 USD/day" in reason_a


def test_the_account_cap_limits_what_better_campaigns_receive():
    guardrails = Guardrails(
        max_daily_change=Decimal("0.20"),
        min_daily_budget_micros=1 * USD,
        min_conversions=Decimal(10),
        max_daily_budget_micros=215 * USD,
    )
    proposals = propose(snapshot(CPA_CAMPAIGNS, target_cpa_micros=50 * USD), guardrails)

    assert by_id(proposals)["e"] == (200 * USD, 212_470_000)
    assert by_id(proposals)["b"] == (100 * USD, 116_620_000)
    assert sum(p.change_micros for p in proposals) == 0
    assert_guardrails(proposals, guardrails)


def test_the_minimum_budget_limits_cuts():
    campaigns = [campaign("poor", 1.10, cost=1000, conversions=10), campaign("good", 50, cost=100, conversions=10)]

    proposals = propose(snapshot(campaigns, target_cpa_micros=50 * USD), GUARDRAILS)

    assert by_id(proposals) == {"poor": (1_100_000, 1_000_000), "good": (50 * USD, 50_100_000)}


def test_reallocation_toward_target_roas():
    campaigns = [
        campaign("low", 100, cost=1400, conversions=20, value=2800),  # ROAS 2 vs 4: 50% worse → cut 20%
        campaign("high", 100, cost=1400, conversions=20, value=8400),  # ROAS 6: better
    ]

    proposals = propose(snapshot(campaigns, target_roas=Decimal(4)), GUARDRAILS)

    assert by_id(proposals) == {"low": (100 * USD, 80 * USD), "high": (100 * USD, 120 * USD)}
    assert "ROAS 2 over 14 days" in proposals[0].reason


def test_no_target_no_reallocation_and_nothing_to_judge_no_change():
    assert propose(snapshot(CPA_CAMPAIGNS), GUARDRAILS) == []
    all_on_target = [campaign("x", 100, cost=500, conversions=10), campaign("y", 100, cost=500, conversions=10)]
    assert propose(snapshot(all_on_target, target_cpa_micros=50 * USD), GUARDRAILS) == []


def test_jpy_proposals_are_whole_yen():
    campaigns = [
        campaign("a", 10_001, cost=100_000, conversions=10),
        campaign("b", 10_000, cost=10_000, conversions=10),
    ]
    proposals = propose(
        snapshot(campaigns, currency_code="JPY", minor_unit_micros=USD, target_cpa_micros=5_000 * USD), GUARDRAILS
    )
    assert_guardrails(proposals, GUARDRAILS, unit=USD)
    assert sum(p.change_micros for p in proposals) == 0


# --- Pacing ---------------------------------------------------------------------------------------

PACING_CAMPAIGNS = [
    campaign("a", 50, cost=700, conversions=20),
    campaign("b", 50, cost=700, conversions=20),
    campaign("fixed", 20, cost=10, conversions=1),  # still spends, cannot be changed
    campaign("paused", 100, cost=0, conversions=0, status="paused"),
]


def pacing(spent: float, today: date = date(2026, 11, 16)) -> list[Proposal]:
    return propose(
        snapshot(
            PACING_CAMPAIGNS,
            today=today,
            monthly_budget_micros=3000 * USD,
            month_spend_through_yesterday_micros=int(spent * USD),
            target_cpa_micros=35 * USD,  # pacing wins over reallocation when it fires
        ),
        GUARDRAILS,
    )


def test_pacing_cuts_an_overspending_account_within_the_daily_guardrail():
    # 15 of 30 days: 1,500 expected, 1,800 spent (120%, band ±12.2%). The rest of the month
    # affords 80/day; 20 of it is fixed, so a and b would need ×0.6, limited to ×0.8.
    proposals = pacing(1800)

    assert by_id(proposals) == {"a": (50 * USD, 40 * USD), "b": (50 * USD, 40 * USD)}
    assert {p.kind for p in proposals} == {PACING}
    assert_guardrails(proposals, GUARDRAILS)
    reason = proposals[0].reason
    assert "1,800.00 USD after 15 of 30 days is 120.0% of the 1,500.00 USD expected" in reason
    assert "3,000.00 USD monthly cap" in reason and "80.00 USD/day for the remaining 15 days" in reason
    assert "limited to the ±20.0% daily guardrail" in reason


def test_pacing_raises_an_underspending_account():
    # 1,000 spent of 1,500 expected: 2,000 over 15 days is 133.33/day; (133.33 - 20) / 100 = ×1.1333.
    assert by_id(pacing(1000)) == {"a": (50 * USD, 56_660_000), "b": (50 * USD, 56_660_000)}


def test_within_the_band_pacing_leaves_budgets_to_reallocation():
    proposals = pacing(1600)  # 106.7%: inside ±12.2%

    assert {p.kind for p in proposals} <= {REALLOCATION}


def test_the_band_tightens_toward_month_end():
    bands = [pacing_band(day, 30) for day in range(1, 31)]
    assert bands[0] == Decimal("0.20") and bands[-1] == Decimal("0.05")
    assert bands == sorted(bands, reverse=True)
    # 8% over on day 5 is tolerated, the same drift on day 29 is not.
    assert PACING not in {p.kind for p in pacing(3000 * 4 / 30 * 1.08, today=date(2026, 11, 5))}
    assert {p.kind for p in pacing(3000 * 28 / 30 * 1.08, today=date(2026, 11, 29))} == {PACING}


def test_no_pacing_on_the_first_of_the_month():
    assert all(p.kind == REALLOCATION for p in pacing(0, today=date(2026, 11, 1)))


@pytest.mark.parametrize("spent", [0, 500, 1000, 1400, 1700, 2500, 4000])
def test_pacing_always_respects_the_guardrails(spent):
    assert_guardrails(pacing(spent), GUARDRAILS)
