"""Deterministic demo data for the Graph API emulator.

Campaigns, ad sets and accounts are stored (they are few and budgets change); daily insights
are *computed* from (campaign id, date) on every request, never stored, so a scaled sandbox
with thousands of campaigns x 90 days keeps a flat memory footprint and answers the
same numbers every time. An ad set's insights are its campaign's split by weight, so the ad
sets of a campaign add up to the campaign exactly.

Budgets live where Meta keeps them: on the campaign (CBO, daily or lifetime) or on its ad sets
(ABO). Lifetime budgets run in 30-day flights (the flight containing today), with start and end
times and what is left of them. Spend hovers around the budget: within 0.68x-1.08x of it a day
(Meta may spend up to 1.25x a daily budget on one day; the demo stays under the 110% alert
line), the swings cancelling out over the calendar month, except for one campaign that
overspends every day ("Prospecting - Lookalike 1%", 1.3x-1.4x), the one a fresh demo alerts on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from platforms.base import minor_unit_micros
from platforms.sandbox import credentials

DEMO_BUSINESS_ID = credentials.META_BUSINESS_ID
DEMO_ACCOUNT_ID = "300000000000001"  # without the "act_" prefix, as Graph's account_id field
DEMO_PIXEL_ID = "400000000000001"
CAMPAIGN_ID_BASE = 120210000000000  # Meta campaign ids are 15+ digit integers
ADSET_ID_BASE = 120220000000000
FLIGHT_EPOCH = date(2024, 1, 1)
FLIGHT_DAYS = 30
SPEND_MEAN = 0.88
SPEND_SWING = 0.2
OVERSPEND_FACTOR = 1.3  # the overspending campaign: 1.3x-1.4x its budget, every day

# Action types the emulator reports. Real insights list aggregate and pixel-only types side by
# side ("purchase" includes "offsite_conversion.fb_pixel_purchase"), so a client that sums every
# purchase-like type counts each conversion twice; the emulator reproduces that overlap.
PURCHASE_ACTION_TYPES = ("purchase", "offsite_conversion.fb_pixel_purchase", "omni_purchase")
LEAD_ACTION_TYPES = ("lead", "offsite_conversion.fb_pixel_lead")


@dataclass
class SandboxAccount:
    account_id: str  # digits only; the Graph node id is "act_" + account_id
    name: str
    currency: str
    timezone_name: str
    business_id: str = DEMO_BUSINESS_ID
    campaign_ids: list[str] = field(default_factory=list)


@dataclass
class SandboxAdSet:
    adset_id: str
    campaign_id: str
    account_id: str
    name: str
    status: str  # configured status: ACTIVE | PAUSED | ARCHIVED | DELETED
    daily_budget: int | None = None  # minor units; only when the campaign does not hold the budget
    lifetime_budget: int | None = None
    weight: int = 1  # its share of the campaign's delivery
    spend_basis: int = 0  # minor units it spends on an average day (ABO: its budget's)


@dataclass
class SandboxCampaign:
    campaign_id: str
    account_id: str
    name: str
    status: str  # Graph's configured status: ACTIVE | PAUSED | ARCHIVED | DELETED
    daily_budget: int | None  # minor units of the account currency; None = not on the campaign
    lifetime_budget: int | None = None
    objective: str = "OUTCOME_SALES"
    adset_ids: list[str] = field(default_factory=list)
    # Minor units spent on an average day: fixed at creation, so a budget changed later does not
    # rewrite history (as on the platform).
    spend_basis: int = 0
    overspends: bool = False

    @property
    def budget_on_ad_sets(self) -> bool:
        return self.daily_budget is None and self.lifetime_budget is None


def flight(today: date) -> tuple[date, date]:
    """The 30-day flight of lifetime budgets that contains ``today`` (first and last day)."""
    start = FLIGHT_EPOCH + timedelta(days=(today - FLIGHT_EPOCH).days // FLIGHT_DAYS * FLIGHT_DAYS)
    return start, start + timedelta(days=FLIGHT_DAYS - 1)


def graph_time(day: date, timezone_name: str, *, end: bool = False) -> str:
    """A day's start (or last second) in the account's zone, as Graph writes times."""
    moment = datetime.combine(day, time(23, 59, 59) if end else time(0), ZoneInfo(timezone_name))
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


# name, status, daily budget (EUR cents), lifetime budget (EUR cents), objective
_OVERSPENDING_CAMPAIGN = "Prospecting - Lookalike 1%"
# Ad sets of the campaigns that keep their budgets on them (ABO): name, daily, lifetime (cents).
_DEMO_ABO_AD_SETS: dict[str, tuple[tuple[str, int | None, int | None], ...]] = {
    "Interest Tests - Ad Set Budgets": (
        ("Interests - Running", 2_000, None),
        ("Interests - Yoga", 1_500, None),
        ("Interests - Cycling", 1_000, None),
    ),
    "Black Friday - Ad Set Flights": (
        ("Black Friday - Lookalike", None, 60_000),
        ("Black Friday - Retargeting", None, 45_000),
    ),
}
_CBO_AD_SET_NAMES = ("Broad", "Lookalike 3%", "Retargeting 30 days")
_DEMO_CAMPAIGNS: tuple[tuple[str, str, int | None, int | None, str], ...] = (
    ("Brand - Always On", "ACTIVE", 5_000, None, "OUTCOME_AWARENESS"),
    ("Prospecting - Lookalike 1%", "ACTIVE", 12_000, None, "OUTCOME_SALES"),
    ("Catalog Sales - Dynamic Ads", "ACTIVE", 8_000, None, "OUTCOME_SALES"),
    ("Lead Gen - Webinar", "PAUSED", 3_000, None, "OUTCOME_LEADS"),
    ("Advantage+ Shopping - Q4 Flight", "ACTIVE", None, 300_000, "OUTCOME_SALES"),
    ("Interest Tests - Ad Set Budgets", "ACTIVE", None, None, "OUTCOME_TRAFFIC"),
    ("Summer Sale 2025", "ARCHIVED", 4_000, None, "OUTCOME_SALES"),
    ("Old Creative Test", "DELETED", 1_000, None, "OUTCOME_ENGAGEMENT"),
    ("Video Views - Brand Lift", "PAUSED", 2_500, None, "OUTCOME_AWARENESS"),
    ("Retargeting - Cart Abandoners", "ACTIVE", 6_550, None, "OUTCOME_SALES"),
    ("Black Friday - Ad Set Flights", "ACTIVE", None, None, "OUTCOME_SALES"),
)


@dataclass
class MetaSandboxData:
    """Everything the emulator serves. Build with ``demo()`` or ``scaled()``; extend with
    ``add_account()``."""

    business_id: str = DEMO_BUSINESS_ID
    business_name: str = "IBVI Sandbox Business"
    pixel_id: str = DEMO_PIXEL_ID
    pixel_name: str = "Sandbox pixel"
    days: int = 90  # insights exist for the last ``days`` days, today included (account time)
    accounts: dict[str, SandboxAccount] = field(default_factory=dict)
    campaigns: dict[str, SandboxCampaign] = field(default_factory=dict)
    adsets: dict[str, SandboxAdSet] = field(default_factory=dict)
    _next_campaign: int = CAMPAIGN_ID_BASE + 1
    _next_adset: int = ADSET_ID_BASE + 1

    @classmethod
    def demo(cls, *, days: int = 90) -> MetaSandboxData:
        data = cls(days=days)
        data.add_account(DEMO_ACCOUNT_ID, "IBVI Sandbox - EUR", "EUR", "Europe/Berlin", campaigns=0)
        for name, status, daily, lifetime, objective in _DEMO_CAMPAIGNS:
            campaign = data.add_campaign(
                DEMO_ACCOUNT_ID, name, status, daily, lifetime, objective, ad_sets=_DEMO_ABO_AD_SETS.get(name)
            )
            campaign.overspends = name == _OVERSPENDING_CAMPAIGN
        return data

    @classmethod
    def scaled(cls, *, campaigns: int = 1000, days: int = 90) -> MetaSandboxData:
        """The demo account grown to ``campaigns`` campaigns (benchmarks, load tests)."""
        data = cls.demo(days=days)
        for index in range(len(data.campaigns), campaigns):
            status = "PAUSED" if index % 7 == 0 else "ACTIVE"
            data.add_campaign(DEMO_ACCOUNT_ID, f"Scaled campaign {index + 1:05d}", status, 1_000 + 100 * (index % 50))
        return data

    def add_account(
        self,
        account_id: str,
        name: str,
        currency: str,
        timezone_name: str,
        *,
        campaigns: int = 3,
        business_id: str | None = None,
    ) -> SandboxAccount:
        """Add an ad account owned by the business, with ``campaigns`` active campaigns whose
        daily budgets are 5,000 / 6,000 / ... minor units of ``currency``."""
        account = SandboxAccount(account_id, name, currency.upper(), timezone_name, business_id or self.business_id)
        self.accounts[account_id] = account
        for index in range(campaigns):
            self.add_campaign(account_id, f"{name} - Campaign {index + 1}", "ACTIVE", 5_000 + 1_000 * index)
        return account

    def add_campaign(
        self,
        account_id: str,
        name: str,
        status: str = "ACTIVE",
        daily_budget: int | None = None,
        lifetime_budget: int | None = None,
        objective: str = "OUTCOME_SALES",
        *,
        ad_sets: tuple[tuple[str, int | None, int | None], ...] | None = None,
    ) -> SandboxCampaign:
        """A campaign and its ad sets: ``ad_sets`` (name, daily, lifetime) hold the budgets of an
        ABO campaign; without them a campaign holding its budget gets three ad sets without one."""
        campaign_id = str(self._next_campaign)
        self._next_campaign += 1
        campaign = SandboxCampaign(campaign_id, account_id, name, status, daily_budget, lifetime_budget, objective)
        self.campaigns[campaign_id] = campaign
        self.accounts[account_id].campaign_ids.append(campaign_id)
        if ad_sets is None:
            ad_sets = tuple((f"{name} - {suffix}", None, None) for suffix in _CBO_AD_SET_NAMES)
        for position, (adset_name, adset_daily, adset_lifetime) in enumerate(ad_sets):
            basis = adset_daily if adset_daily is not None else (adset_lifetime or 0) // FLIGHT_DAYS
            adset = SandboxAdSet(
                adset_id=str(self._next_adset),
                campaign_id=campaign_id,
                account_id=account_id,
                name=adset_name,
                # The last ad set of a campaign with several is paused, as tests get paused.
                status="PAUSED" if position == len(ad_sets) - 1 and len(ad_sets) > 2 else "ACTIVE",
                daily_budget=adset_daily,
                lifetime_budget=adset_lifetime,
                weight=basis if campaign.budget_on_ad_sets else len(ad_sets) - position,
                spend_basis=basis,
            )
            self._next_adset += 1
            self.adsets[adset.adset_id] = adset
            campaign.adset_ids.append(adset.adset_id)
        if campaign.budget_on_ad_sets:
            campaign.spend_basis = sum(self.adsets[a].spend_basis for a in campaign.adset_ids)
        else:
            campaign.spend_basis = daily_budget if daily_budget is not None else (lifetime_budget or 0) // FLIGHT_DAYS
        return campaign

    def adsets_of(self, campaign: SandboxCampaign) -> list[SandboxAdSet]:
        return [self.adsets[a] for a in campaign.adset_ids]


def _currency_digits(currency: str) -> int:
    """Decimal places Graph uses for amounts in ``currency`` (EUR 2, JPY 0, KWD 3)."""
    return {10_000: 2, 1_000_000: 0, 1_000: 3}[minor_unit_micros(currency)]


def format_minor(amount_minor: int, currency: str) -> str:
    """Minor units → Graph's decimal string in currency units ("12.34"; JPY "1234")."""
    digits = _currency_digits(currency)
    return str(Decimal(amount_minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))


@dataclass(frozen=True)
class DayCounts:
    """One object's delivery on one day, in whole numbers (money in minor units)."""

    impressions: int
    clicks: int
    spend_minor: int
    purchases: int
    leads: int
    purchase_value_minor: int


def _unit(campaign_id: str, day: date) -> float:
    digest = hashlib.blake2b(f"swing:{campaign_id}:{day.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@lru_cache(maxsize=65_536)
def campaign_day(campaign_id: str, status: str, spend_basis: int, overspends: bool, day: date) -> DayCounts | None:
    """A campaign's delivery on one day, or None without delivery. A pure function."""
    digest = hashlib.blake2b(f"{campaign_id}:{day.isoformat()}".encode(), digest_size=16).digest()
    h = [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 16, 4)]
    if status != "ACTIVE" and h[0] % 11 == 0:  # some days without delivery: Graph then returns no row
        return None
    if overspends:
        factor = OVERSPEND_FACTOR + 0.1 * _unit(campaign_id, day)
    else:
        previous = 0.0 if day.day == 1 else _unit(campaign_id, day - timedelta(days=1))
        factor = SPEND_MEAN + SPEND_SWING * (_unit(campaign_id, day) - previous)
    # Cost per click in minor units: 0.05-0.35 EUR, or 5-35 JPY (same digits, offset 1).
    cpc = 5 + h[3] % 31
    clicks = int(spend_basis * factor) // cpc
    impressions = clicks * 1_000 // (5 + h[2] % 35)
    purchases = clicks * (h[2] % 7) // 100
    leads = clicks * (h[1] % 5) // 100
    return DayCounts(impressions, clicks, clicks * cpc, purchases, leads, purchases * (2_000 + h[3] % 8_000))


def _campaign_counts(campaign: SandboxCampaign, day: date) -> DayCounts | None:
    return campaign_day(campaign.campaign_id, campaign.status, campaign.spend_basis, campaign.overspends, day)


def split_counts(total: DayCounts, weights: list[int]) -> list[DayCounts]:
    """``total`` split by weight; the parts add up to it exactly (the last takes the rest)."""
    whole = sum(weights) or 1
    names = ("impressions", "clicks", "spend_minor", "purchases", "leads", "purchase_value_minor")
    left = {name: getattr(total, name) for name in names}
    parts = []
    for index, weight in enumerate(weights):
        if index == len(weights) - 1:
            parts.append(DayCounts(**left))
            break
        part = {name: getattr(total, name) * weight // whole for name in names}
        parts.append(DayCounts(**part))
        left = {name: left[name] - part[name] for name in names}
    return parts


def insight_row(counts: DayCounts, currency: str, first: date, last: date, ids: dict[str, str]) -> dict[str, object]:
    """One insights row as the Graph API writes it: the counts of ``first``..``last`` (one day or a
    whole range), its actions and action values by type."""
    row: dict[str, object] = {
        **ids,
        "date_start": first.isoformat(),
        "date_stop": last.isoformat(),
        "impressions": str(counts.impressions),
        "clicks": str(counts.clicks),
        "spend": format_minor(counts.spend_minor, currency),
    }
    actions = [{"action_type": "link_click", "value": str(counts.clicks)}]
    values = []
    if counts.purchases:
        actions += [{"action_type": t, "value": str(counts.purchases)} for t in PURCHASE_ACTION_TYPES]
        values += [
            {"action_type": t, "value": format_minor(counts.purchase_value_minor, currency)}
            for t in PURCHASE_ACTION_TYPES
        ]
    if counts.leads:
        actions += [{"action_type": t, "value": str(counts.leads)} for t in LEAD_ACTION_TYPES]
    row["actions"] = actions
    if values:
        row["action_values"] = values
    return row


def daily_insight(campaign: SandboxCampaign, currency: str, day: date) -> dict[str, object] | None:
    """One campaign-day of insights as Graph returns it (numbers as strings), or None when the
    campaign delivered nothing that day. A pure function of (campaign id, date)."""
    counts = _campaign_counts(campaign, day)
    if counts is None:
        return None
    return insight_row(
        counts, currency, day, day, {"campaign_id": campaign.campaign_id, "campaign_name": campaign.name}
    )


def adset_day_counts(campaign: SandboxCampaign, adsets: list[SandboxAdSet], day: date) -> list[DayCounts] | None:
    counts = _campaign_counts(campaign, day)
    if counts is None:
        return None
    return split_counts(counts, [a.weight for a in adsets])


def adset_insight(
    campaign: SandboxCampaign, adsets: list[SandboxAdSet], position: int, currency: str, day: date
) -> dict[str, object] | None:
    """One ad set's day: its share of its campaign's day (the ad sets add up to the campaign)."""
    parts = adset_day_counts(campaign, adsets, day)
    if parts is None:
        return None
    adset = adsets[position]
    ids = {
        "campaign_id": campaign.campaign_id,
        "campaign_name": campaign.name,
        "adset_id": adset.adset_id,
        "adset_name": adset.name,
    }
    return insight_row(parts[position], currency, day, day, ids)


def spent_minor(
    campaign: SandboxCampaign, adsets: list[SandboxAdSet], position: int | None, first: date, last: date
) -> int:
    """What a campaign (``position`` None) or its ad set ``adsets[position]`` spent, days inclusive."""
    total, day = 0, first
    while day <= last:
        if position is None:
            counts = _campaign_counts(campaign, day)
            total += counts.spend_minor if counts else 0
        else:
            parts = adset_day_counts(campaign, adsets, day)
            total += parts[position].spend_minor if parts else 0
        day += timedelta(days=1)
    return total
