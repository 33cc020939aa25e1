"""Deterministic demo data for the Google Ads emulator.

Nothing per campaign or per day is stored: campaigns are a function of (customer, index) and
metrics a function of (campaign id, date), so ``GoogleSandboxData.scaled(campaigns=10_000)``
serves millions of rows with flat memory. Only what the API changes (budgets, uploaded
conversions) lives in the server state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MANAGER_CUSTOMER_ID = 1000000001  # the same id as registry.SANDBOX_GOOGLE_MANAGER_ID
AGENCY_MANAGER_ID = 1000000002  # reached by the sandbox's second login and its service account

# Per customer offsets keep ids of different customers apart, even at 10,000+ campaigns.
_CAMPAIGN_ID_BASE = 20_000_000_000
_BUDGET_ID_BASE = 30_000_000_000
_ID_STRIDE = 1_000_000_000

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
    amount_micros: int
    explicitly_shared: bool
    reference_count: int


@dataclass(frozen=True)
class SandboxCampaign:
    id: int
    customer_id: int
    index: int
    name: str
    status: str  # CampaignStatus enum name
    budget: SandboxBudget


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


def daily_metrics(campaign_id: int, day: date) -> DailyMetrics:
    """The metrics of one campaign on one day: a pure function, so every read agrees."""
    h = _mix64(campaign_id * 1_000_003 + day.toordinal())
    size = 1 + campaign_id % 7  # some campaigns are consistently bigger than others
    weekday_factor = (10, 11, 11, 11, 10, 7, 6)[day.weekday()]
    impressions = (200 + h % 4_000) * size * weekday_factor // 10
    clicks = impressions * (5 + (h >> 16) % 60) // 1_000
    # 5-44 cents a click: a demo campaign spends in the range of its daily budget.
    cpc_cents = 5 + (h >> 24) % 40
    cost_micros = clicks * cpc_cents * 10_000
    conversions = round(clicks * ((h >> 32) % 12) / 100, 2)
    conversions_value = round(conversions * (15 + (h >> 40) % 85), 2)
    return DailyMetrics(impressions, clicks, cost_micros, conversions, conversions_value)


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
    days: int = 90  # metrics exist for the `days` days before today (account time zone)
    search_page_size: int = 10_000  # rows per Search page, as the real API
    stream_batch_size: int = 10_000  # rows per SearchStream message, as the real API

    @classmethod
    def scaled(cls, *, campaigns: int = 10_000, days: int = 90, **overrides: int) -> GoogleSandboxData:
        """The demo accounts with ``campaigns`` campaigns each, for load tests and benchmarks."""
        return cls(campaigns_per_customer=campaigns, days=days, **overrides)

    def with_options(self, **changes: int) -> GoogleSandboxData:
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
                amount_micros=150_000_000,
                explicitly_shared=True,
                reference_count=len(_SHARED_BUDGET_POSITIONS),
            )
        else:
            budget = SandboxBudget(
                id=_BUDGET_ID_BASE + id_offset + index + 1,
                customer_id=customer_id,
                name=f"Budget {name}",
                amount_micros=(10 + index * 37 % 190) * 1_000_000,
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

    # --- Metrics -------------------------------------------------------------------------------

    def metric_window(self, customer: SandboxCustomer) -> tuple[date, date]:
        """First and last day with metrics: the ``days`` complete days before today, local time."""
        today = customer.today()
        return today - timedelta(days=self.days), today - timedelta(days=1)
