"""Deterministic demo data for the Graph API emulator.

Campaigns and accounts are stored (they are few and budgets change); daily insights are
*computed* from (campaign id, date) on every request, never stored, so a scaled sandbox
with thousands of campaigns x 90 days keeps a flat memory footprint and answers the
same numbers every time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from platforms.base import minor_unit_micros
from platforms.registry import SANDBOX_META_BUSINESS_ID

DEMO_BUSINESS_ID = SANDBOX_META_BUSINESS_ID
DEMO_ACCOUNT_ID = "300000000000001"  # without the "act_" prefix, as Graph's account_id field
DEMO_PIXEL_ID = "400000000000001"
CAMPAIGN_ID_BASE = 120210000000000  # Meta campaign ids are 15+ digit integers

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
class SandboxCampaign:
    campaign_id: str
    account_id: str
    name: str
    status: str  # Graph's configured status: ACTIVE | PAUSED | ARCHIVED | DELETED
    daily_budget: int | None  # minor units of the account currency; None = not on the campaign
    lifetime_budget: int | None = None
    objective: str = "OUTCOME_SALES"

    @property
    def budget_on_ad_sets(self) -> bool:
        return self.daily_budget is None and self.lifetime_budget is None


# name, status, daily budget (EUR cents), lifetime budget (EUR cents), objective
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
)


@dataclass
class MetaSandboxData:
    """Everything the emulator serves. Build with ``demo()`` or ``scaled()``; extend with
    ``add_account()``."""

    business_id: str = DEMO_BUSINESS_ID
    business_name: str = "IBVI Sandbox Business"
    pixel_id: str = DEMO_PIXEL_ID
    days: int = 90  # insights exist for the last ``days`` days, today included (account time)
    accounts: dict[str, SandboxAccount] = field(default_factory=dict)
    campaigns: dict[str, SandboxCampaign] = field(default_factory=dict)
    _next_campaign: int = CAMPAIGN_ID_BASE + 1

    @classmethod
    def demo(cls, *, days: int = 90) -> MetaSandboxData:
        data = cls(days=days)
        data.add_account(DEMO_ACCOUNT_ID, "IBVI Sandbox - EUR", "EUR", "Europe/Berlin", campaigns=0)
        for name, status, daily, lifetime, objective in _DEMO_CAMPAIGNS:
            data.add_campaign(DEMO_ACCOUNT_ID, name, status, daily, lifetime, objective)
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
    ) -> SandboxCampaign:
        campaign_id = str(self._next_campaign)
        self._next_campaign += 1
        campaign = SandboxCampaign(campaign_id, account_id, name, status, daily_budget, lifetime_budget, objective)
        self.campaigns[campaign_id] = campaign
        self.accounts[account_id].campaign_ids.append(campaign_id)
        return campaign


def _currency_digits(currency: str) -> int:
    """Decimal places Graph uses for amounts in ``currency`` (EUR 2, JPY 0, KWD 3)."""
    return {10_000: 2, 1_000_000: 0, 1_000: 3}[minor_unit_micros(currency)]


def format_minor(amount_minor: int, currency: str) -> str:
    """Minor units → Graph's decimal string in currency units ("12.34"; JPY "1234")."""
    digits = _currency_digits(currency)
    return str(Decimal(amount_minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))


def daily_insight(campaign: SandboxCampaign, currency: str, day: date) -> dict[str, object] | None:
    """One campaign-day of insights as Graph returns it (numbers as strings), or None when the
    campaign delivered nothing that day. A pure function of (campaign id, date)."""
    digest = hashlib.blake2b(f"{campaign.campaign_id}:{day.isoformat()}".encode(), digest_size=16).digest()
    h = [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 16, 4)]
    if h[0] % 11 == 0:  # some days without delivery: Graph then returns no row at all
        return None
    impressions = 500 + h[1] % 40_000
    clicks = impressions * (5 + h[2] % 35) // 1_000
    # Cost per click in minor units: 0.05-0.35 EUR, or 5-35 JPY (same digits, offset 1), so
    # a demo campaign spends roughly its daily budget (pacing and alerts look like real ones).
    spend_minor = clicks * (5 + h[3] % 31)
    purchases = clicks * (h[2] % 7) // 100
    leads = clicks * (h[1] % 5) // 100
    purchase_value_minor = purchases * (2_000 + h[3] % 8_000)
    row: dict[str, object] = {
        "campaign_id": campaign.campaign_id,
        "date_start": day.isoformat(),
        "date_stop": day.isoformat(),
        "impressions": str(impressions),
        "clicks": str(clicks),
        "spend": format_minor(spend_minor, currency),
    }
    actions = [{"action_type": "link_click", "value": str(clicks)}]
    values = []
    if purchases:
        actions += [{"action_type": t, "value": str(purchases)} for t in PURCHASE_ACTION_TYPES]
        values += [
            {"action_type": t, "value": format_minor(purchase_value_minor, currency)} for t in PURCHASE_ACTION_TYPES
        ]
    if leads:
        actions += [{"action_type": t, "value": str(leads)} for t in LEAD_ACTION_TYPES]
    row["actions"] = actions
    if values:
        row["action_values"] = values
    return row
