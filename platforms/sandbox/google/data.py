"""Deterministic demo data for the Google Ads emulator.

Nothing per campaign or per day is stored: campaigns and their ad groups are a function of
(customer, index) and metrics a function of (campaign id, date), so
``GoogleSandboxData.scaled(campaigns=10_000)`` serves millions of rows (ad groups included) with
flat memory. Only what the API changes (budgets, statuses, uploaded conversions) lives in the
server state.

Spend looks like a real account's: each campaign spends around its daily budget, some days up to
1.65x (Google may spend up to 2x a daily budget on one day while it paces the month), and the
day-to-day swings cancel out within the calendar month, so no campaign's month to date runs over
days elapsed x budget. A fresh demo therefore opens no Google overspend alert.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from platforms.sandbox import credentials

MANAGER_CUSTOMER_ID = int(credentials.GOOGLE_MANAGER_ID)
AGENCY_MANAGER_ID = 1000000002  # reached by the sandbox's second login and its service account

# Per customer offsets keep ids of different customers apart, even at 10,000+ campaigns.
_CAMPAIGN_ID_BASE = 20_000_000_000
_BUDGET_ID_BASE = 30_000_000_000
_AD_GROUP_ID_BASE = 40_000_000_000
_ID_STRIDE = 1_000_000_000

# Campaigns with a total (custom-period) budget, as (customer slot, campaign index): the UK
# account's "Demand Gen - Prospecting" runs in 30-day flights with a total budget.
_TOTAL_BUDGET_CAMPAIGNS = ((1, 8),)
FLIGHT_EPOCH = date(2024, 1, 1)
FLIGHT_DAYS = 30

# Spend per day = budget x (mean + swing x (u(day) - u(day before))), u in [0, 1) from a hash and
# u(day before the 1st) = 0: the swings telescope, so a month to date is at most
# days x mean + swing, under days x budget.
SPEND_MEAN = 0.9
SPEND_SWING = 0.75

_AD_GROUP_THEMES = ("Core terms", "Long tail", "Competitor terms", "In-market audiences", "New copy test")

_DEMO_CAMPAIGN_NAMES = (
    "Brand - Search",
    "Generic - Search",
    "Competitors - Search",
    "Remarketing - Display",
    "Shopping - All Products",
    "Performance Max - Core",
    "YouTube - Awareness",
    "Local - Store Visits",
    "Demand Gen - Prospecting",
    "Legacy - Search",
)
# Position in each group of ten -> status. Index 9 of every group is removed, 3 and 6 paused.
_STATUS_BY_POSITION = (
    "ENABLED",
    "ENABLED",
    "ENABLED",
    "PAUSED",
    "ENABLED",
    "ENABLED",
    "PAUSED",
    "ENABLED",
    "ENABLED",
    "REMOVED",
)
# Positions 0 and 1 of every group of ten share one explicitly shared budget.
_SHARED_BUDGET_POSITIONS = (0, 1)


@dataclass(frozen=True)
class SandboxCustomer:
    id: int
    descriptive_name: str
    currency_code: str
    time_zone: str
    manager: bool = False
    manager_id: int | None = None  # the manager this client sits under (level 1)

    def today(self) -> date:
        """Today in the account's own time zone: the day the API reports as TODAY."""
        return datetime.now(ZoneInfo(self.time_zone)).date()


@dataclass(frozen=True)
class ConversionAction:
    id: int
    customer_id: int
    name: str


@dataclass(frozen=True)
class SandboxBudget:
    id: int
    customer_id: int
    name: str
    amount_micros: int | None  # daily budgets; None for a total (custom-period) budget
    explicitly_shared: bool
    reference_count: int
    period: str = "DAILY"  # BudgetPeriod enum name: DAILY | CUSTOM_PERIOD
    total_amount_micros: int | None = None  # CUSTOM_PERIOD budgets only

    @property
    def spend_basis_micros(self) -> int:
        """What one campaign on this budget spends on an average day, before the swings."""
        if self.total_amount_micros is not None:
            return self.total_amount_micros // FLIGHT_DAYS
        return (self.amount_micros or 0) // max(1, self.reference_count)


@dataclass(frozen=True)
class SandboxCampaign:
    id: int
    customer_id: int
    index: int
    name: str
    status: str  # CampaignStatus enum name
    budget: SandboxBudget

    def flight(self, today: date) -> tuple[date, date] | None:
        """Start and end day of a total-budget campaign's current flight (None: runs on)."""
        if self.budget.period != "CUSTOM_PERIOD":
            return None
        start = FLIGHT_EPOCH + timedelta(days=(today - FLIGHT_EPOCH).days // FLIGHT_DAYS * FLIGHT_DAYS)
        return start, start + timedelta(days=FLIGHT_DAYS - 1)


@dataclass(frozen=True)
class SandboxAdGroup:
    """An ad group: no budget of its own (Google keeps budgets on campaigns)."""

    id: int
    customer_id: int
    campaign: SandboxCampaign
    position: int  # 0-based within its campaign
    name: str
    status: str  # AdGroupStatus enum name


@dataclass(frozen=True)
class DailyMetrics:
    impressions: int
    clicks: int
    cost_micros: int
    conversions: float
    conversions_value: float


def _mix64(value: int) -> int:
    """SplitMix64 finaliser: a cheap, well-spread hash so metrics look random but never change."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def _unit_hash(seed: int, day: date) -> float:
    return _mix64(seed * 7_919 + day.toordinal()) / 2**64


def spend_factor(seed: int, day: date, *, mean: float = SPEND_MEAN, swing: float = SPEND_SWING) -> float:
    """The day's spend as a share of the budget; the swings cancel out within a calendar month."""
    previous = 0.0 if day.day == 1 else _unit_hash(seed, day - timedelta(days=1))
    return mean + swing * (_unit_hash(seed, day) - previous)


def default_spend_basis_micros(campaign_id: int) -> int:
    """The average daily spend of a demo campaign, from its id alone (the layout of _campaign_at)."""
    index = (campaign_id - _CAMPAIGN_ID_BASE) % _ID_STRIDE - 1
    if index % 10 in _SHARED_BUDGET_POSITIONS:
        return _SHARED_BUDGET_MICROS // len(_SHARED_BUDGET_POSITIONS)
    return _own_budget_micros(index)


def daily_metrics(campaign_id: int, day: date, spend_basis_micros: int | None = None) -> DailyMetrics:
    """The metrics of one campaign on one day: a pure function, so every read agrees."""
    basis = default_spend_basis_micros(campaign_id) if spend_basis_micros is None else spend_basis_micros
    h = _mix64(campaign_id * 1_000_003 + day.toordinal())
    cost_target = int(basis * spend_factor(campaign_id, day))
    cpc_micros = (5 + (h >> 24) % 40) * 10_000  # 5-44 cents a click
    clicks = cost_target // cpc_micros
    cost_micros = clicks * cpc_micros  # never above the day's target: the month stays in budget
    impressions = clicks * 1_000 // (5 + (h >> 16) % 60)  # CTR 0.5%-6.4%
    conversions = round(clicks * ((h >> 32) % 12) / 100, 2)
    conversions_value = round(conversions * (15 + (h >> 40) % 85), 2)
    return DailyMetrics(impressions, clicks, cost_micros, conversions, conversions_value)


def _weights(count: int) -> tuple[int, ...]:
    """How a campaign's day splits over its ad groups: the first ones carry most of it."""
    return tuple(count - k + (count if k == 0 else 0) for k in range(count))


def split_metrics(total: DailyMetrics, count: int) -> list[DailyMetrics]:
    """A campaign-day split over ``count`` ad groups; the parts add up to the total exactly."""
    if count <= 1:
        return [total]
    weights = _weights(count)
    whole = sum(weights)
    parts: list[DailyMetrics] = []
    # Three int counts, then the two float conversion figures.
    left: list[Any] = [total.impressions, total.clicks, total.cost_micros, total.conversions, total.conversions_value]
    for k, weight in enumerate(weights):
        if k == count - 1:
            parts.append(DailyMetrics(left[0], left[1], left[2], round(left[3], 2), round(left[4], 2)))
            break
        part = DailyMetrics(
            total.impressions * weight // whole,
            total.clicks * weight // whole,
            total.cost_micros * weight // whole,
            round(total.conversions * weight / whole, 2),
            round(total.conversions_value * weight / whole, 2),
        )
        parts.append(part)
        left = [
            left[0] - part.impressions,
            left[1] - part.clicks,
            left[2] - part.cost_micros,
            left[3] - part.conversions,
            left[4] - part.conversions_value,
        ]
    return parts


_SHARED_BUDGET_MICROS = 150_000_000


def _own_budget_micros(index: int) -> int:
    return (10 + index * 37 % 190) * 1_000_000


def _demo_customers() -> tuple[SandboxCustomer, ...]:
    return (
        SandboxCustomer(MANAGER_CUSTOMER_ID, "IBVI Sandbox Manager", "USD", "America/New_York", manager=True),
        SandboxCustomer(1234567890, "IBVI Demo US", "USD", "America/New_York", manager_id=MANAGER_CUSTOMER_ID),
        SandboxCustomer(2345678901, "IBVI Demo UK", "GBP", "Europe/London", manager_id=MANAGER_CUSTOMER_ID),
        # The second sandbox login's manager and its client (platforms/sandbox/google/oauth.py).
        SandboxCustomer(AGENCY_MANAGER_ID, "IBVI Agency Manager", "USD", "America/Chicago", manager=True),
        SandboxCustomer(3456789012, "IBVI Agency Client AU", "AUD", "Australia/Sydney", manager_id=AGENCY_MANAGER_ID),
    )


def _demo_conversion_actions() -> tuple[ConversionAction, ...]:
    return (
        ConversionAction(880000001, 1234567890, "Purchase"),
        ConversionAction(880000002, 1234567890, "Lead form"),
        ConversionAction(880000011, 2345678901, "Purchase"),
        ConversionAction(880000012, 2345678901, "Lead form"),
    )


@dataclass(frozen=True)
class GoogleSandboxData:
    """What the emulator serves. Immutable; the server state holds what the API changed."""

    customers: tuple[SandboxCustomer, ...] = _demo_customers()
    conversion_actions: tuple[ConversionAction, ...] = _demo_conversion_actions()
    campaigns_per_customer: int = 10
    ad_groups_per_campaign: int = 5
    days: int = 90  # metrics exist for the `days` days before today (account time zone)
    search_page_size: int = 10_000  # rows per Search page, as the real API
    stream_batch_size: int = 10_000  # rows per SearchStream message, as the real API

    @classmethod
    def scaled(cls, *, campaigns: int = 10_000, days: int = 90, **overrides: Any) -> GoogleSandboxData:
        """The demo accounts with ``campaigns`` campaigns each, for load tests and benchmarks."""
        return cls(campaigns_per_customer=campaigns, days=days, **overrides)

    def with_options(self, **changes: Any) -> GoogleSandboxData:
        return replace(self, **changes)

    # --- Customers ---------------------------------------------------------------------------

    def customer(self, customer_id: int) -> SandboxCustomer | None:
        for customer in self.customers:
            if customer.id == customer_id:
                return customer
        return None

    def clients_of(self, manager_id: int) -> list[SandboxCustomer]:
        return [c for c in self.customers if c.manager_id == manager_id]

    def conversion_action(self, action_id: int) -> ConversionAction | None:
        for action in self.conversion_actions:
            if action.id == action_id:
                return action
        return None

    def _customer_slot(self, customer_id: int) -> int | None:
        """The position of a non-manager customer, used to keep its ids apart from others'."""
        slot = 0
        for customer in self.customers:
            if customer.manager:
                continue
            if customer.id == customer_id:
                return slot
            slot += 1
        return None

    # --- Campaigns and budgets -----------------------------------------------------------------

    def campaign_count(self, customer_id: int) -> int:
        return 0 if self._customer_slot(customer_id) is None else self.campaigns_per_customer

    def campaigns(self, customer_id: int) -> Iterator[SandboxCampaign]:
        slot = self._customer_slot(customer_id)
        if slot is None:
            return
        for index in range(self.campaigns_per_customer):
            yield self._campaign_at(customer_id, slot, index)

    def campaign(self, customer_id: int, campaign_id: int) -> SandboxCampaign | None:
        slot = self._customer_slot(customer_id)
        if slot is None:
            return None
        index = campaign_id - _CAMPAIGN_ID_BASE - slot * _ID_STRIDE - 1
        if 0 <= index < self.campaigns_per_customer:
            return self._campaign_at(customer_id, slot, index)
        return None

    def budgets(self, customer_id: int) -> Iterator[SandboxBudget]:
        """Each budget once (a shared budget is listed once, not per campaign)."""
        seen_shared: set[int] = set()
        for campaign in self.campaigns(customer_id):
            if campaign.budget.explicitly_shared:
                if campaign.budget.id in seen_shared:
                    continue
                seen_shared.add(campaign.budget.id)
            yield campaign.budget

    def budget(self, customer_id: int, budget_id: int) -> SandboxBudget | None:
        slot = self._customer_slot(customer_id)
        if slot is None:
            return None
        index = budget_id - _BUDGET_ID_BASE - slot * _ID_STRIDE - 1
        if 0 <= index < self.campaigns_per_customer:
            budget = self._campaign_at(customer_id, slot, index).budget
            return budget if budget.id == budget_id else None
        return None

    def campaigns_on_budget(self, customer_id: int, budget_id: int) -> list[SandboxCampaign]:
        """The campaigns a budget serves (two for a shared one)."""
        slot = self._customer_slot(customer_id)
        if slot is None:
            return []
        index = budget_id - _BUDGET_ID_BASE - slot * _ID_STRIDE - 1
        if not 0 <= index < self.campaigns_per_customer:
            return []
        first = self._campaign_at(customer_id, slot, index)
        if first.budget.id != budget_id:
            return []
        if not first.budget.explicitly_shared:
            return [first]
        return [self._campaign_at(customer_id, slot, index + p) for p in range(first.budget.reference_count)]

    def _campaign_at(self, customer_id: int, slot: int, index: int) -> SandboxCampaign:
        position = index % 10
        group_start = index - position
        id_offset = slot * _ID_STRIDE
        if self.campaigns_per_customer <= len(_DEMO_CAMPAIGN_NAMES):
            name = _DEMO_CAMPAIGN_NAMES[index]
        else:
            name = f"Campaign {index + 1:05d}"
        shares = position in _SHARED_BUDGET_POSITIONS and group_start + 1 < self.campaigns_per_customer
        if shares:
            budget = SandboxBudget(
                id=_BUDGET_ID_BASE + id_offset + group_start + 1,
                customer_id=customer_id,
                name=f"Shared budget {group_start // 10 + 1}",
                amount_micros=_SHARED_BUDGET_MICROS,
                explicitly_shared=True,
                reference_count=len(_SHARED_BUDGET_POSITIONS),
            )
        elif (slot, index) in _TOTAL_BUDGET_CAMPAIGNS and index < self.campaigns_per_customer:
            budget = SandboxBudget(
                id=_BUDGET_ID_BASE + id_offset + index + 1,
                customer_id=customer_id,
                name=f"Flight budget {name}",
                amount_micros=None,
                explicitly_shared=False,
                reference_count=1,
                period="CUSTOM_PERIOD",
                total_amount_micros=_own_budget_micros(index) * FLIGHT_DAYS,
            )
        else:
            budget = SandboxBudget(
                id=_BUDGET_ID_BASE + id_offset + index + 1,
                customer_id=customer_id,
                name=f"Budget {name}",
                amount_micros=_own_budget_micros(index),
                explicitly_shared=False,
                reference_count=1,
            )
        return SandboxCampaign(
            id=_CAMPAIGN_ID_BASE + id_offset + index + 1,
            customer_id=customer_id,
            index=index,
            name=name,
            status=_STATUS_BY_POSITION[position],
            budget=budget,
        )

    # --- Ad groups -----------------------------------------------------------------------------

    def ad_groups_of(self, campaign: SandboxCampaign) -> list[SandboxAdGroup]:
        return [self._ad_group_at(campaign, k) for k in range(self.ad_groups_per_campaign)]

    def ad_group(self, customer_id: int, ad_group_id: int) -> SandboxAdGroup | None:
        slot = self._customer_slot(customer_id)
        if slot is None or self.ad_groups_per_campaign <= 0:
            return None
        offset = ad_group_id - _AD_GROUP_ID_BASE - slot * _ID_STRIDE - 1
        index, position = divmod(offset, self.ad_groups_per_campaign)
        if offset < 0 or not 0 <= index < self.campaigns_per_customer:
            return None
        return self._ad_group_at(self._campaign_at(customer_id, slot, index), position)

    def _ad_group_at(self, campaign: SandboxCampaign, position: int) -> SandboxAdGroup:
        slot = self._customer_slot(campaign.customer_id) or 0
        per = self.ad_groups_per_campaign
        name = _AD_GROUP_THEMES[position] if per <= len(_AD_GROUP_THEMES) else f"Ad group {position + 1:02d}"
        # The last ad group of each campaign is paused; every fourth campaign removed one.
        status = "ENABLED"
        if position == per - 1 and per > 1:
            status = "PAUSED"
        elif campaign.index % 4 == 2 and position == per - 2 and per > 2:
            status = "REMOVED"
        return SandboxAdGroup(
            id=_AD_GROUP_ID_BASE + slot * _ID_STRIDE + campaign.index * per + position + 1,
            customer_id=campaign.customer_id,
            campaign=campaign,
            position=position,
            name=name,
            status=status,
        )

    def ad_group_metrics(self, campaign: SandboxCampaign, day: date) -> list[DailyMetrics]:
        """Each ad group's metrics of one day, in ad group order; they add up to the campaign's."""
        return split_metrics(self.campaign_metrics(campaign, day), self.ad_groups_per_campaign)

    def campaign_metrics(self, campaign: SandboxCampaign, day: date) -> DailyMetrics:
        return daily_metrics(campaign.id, day, campaign.budget.spend_basis_micros)

    # --- Metrics -------------------------------------------------------------------------------

    def metric_window(self, customer: SandboxCustomer) -> tuple[date, date]:
        """First and last day with metrics: the ``days`` complete days before today, local time."""
        today = customer.today()
        return today - timedelta(days=self.days), today - timedelta(days=1)
