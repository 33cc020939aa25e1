"""The one interface every ad platform adapter implements, in platform-neutral terms.

Money is integer micros (Google's unit: 1 USD = 1,000,000 micros). Dates of metrics are
dates in the ad account's own time zone, as the platforms report them. Errors say what
the caller should do: retry later, retry after N seconds, stop and tell an operator,
or give up on this request/row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

MICROS_PER_UNIT = 1_000_000

# ISO 4217 currencies without a minor unit (Meta's offset 1; Google's minimum unit is
# one whole unit). Meta's documented offset-1 list, which also holds the ISO ones.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF",
        "CLP",
        "COP",
        "CRC",
        "DJF",
        "GNF",
        "HUF",
        "IDR",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "TWD",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def minor_unit_micros(currency_code: str) -> int:
    """Micros in one minor unit of the currency: USD 10,000 (a cent); JPY 1,000,000."""
    code = currency_code.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return MICROS_PER_UNIT
    if code in THREE_DECIMAL_CURRENCIES:
        return MICROS_PER_UNIT // 1000
    return MICROS_PER_UNIT // 100


def format_money(micros: int | Decimal | float | None, currency_code: str) -> str:
    """An amount in its currency's own precision, code after it: "1,234.50 USD", "1,235 JPY",
    "12.345 KWD"; "—" for none. Without a currency: two decimals and no code. The platform's one
    money formatter (admin, dashboard, alerts and the optimizer's reasons all use it)."""
    if micros is None:
        return "—"
    unit = minor_unit_micros(currency_code) if currency_code else MICROS_PER_UNIT // 100
    places = 0 if unit >= MICROS_PER_UNIT else (3 if unit == MICROS_PER_UNIT // 1000 else 2)
    return f"{Decimal(micros) / MICROS_PER_UNIT:,.{places}f} {currency_code}".strip()


def minor_to_micros(amount_minor: int | str, currency_code: str) -> int:
    return int(amount_minor) * minor_unit_micros(currency_code)


def micros_to_minor(micros: int, currency_code: str) -> int:
    """Exact conversion; a budget that is not a whole number of minor units is refused."""
    unit = minor_unit_micros(currency_code)
    if micros % unit:
        raise ValueError(f"{micros} micros is not a multiple of the {currency_code} minimum unit ({unit} micros)")
    return micros // unit


def units_to_micros(amount: Decimal | float | str) -> int:
    return int((Decimal(str(amount)) * MICROS_PER_UNIT).to_integral_value())


# --- Errors ---------------------------------------------------------------------------------


class PlatformError(Exception):
    """Base of every adapter error. Messages never contain credentials."""

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        code: str = "",
        request_id: str = "",
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.platform = platform
        self.code = code
        self.request_id = request_id
        self.details = details

    def __str__(self) -> str:
        prefix = f"[{self.platform}:{self.code}] " if self.code else (f"[{self.platform}] " if self.platform else "")
        return f"{prefix}{self.message}"


class TransientError(PlatformError):
    """The platform is unavailable or timed out: retry later with backoff."""


class RateLimitedError(TransientError):
    """Quota or rate limit reached: retry after ``retry_after_seconds``, not sooner.

    ``sent`` is False when the adapter held the call back itself (a pause the platform announced
    is still running): nothing reached the platform, so no attempt was spent."""

    def __init__(self, message: str, *, retry_after_seconds: float, sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds
        self.sent = sent


class AuthError(PlatformError):
    """Credentials or configuration are wrong: stop, and tell an operator. Never retried."""


class PermanentError(PlatformError):
    """The request itself was refused; sending it again gives the same answer."""


# --- Neutral data ---------------------------------------------------------------------------


class AccountRef(Protocol):
    """What an adapter needs to know about an account (campaigns.AdAccount fits)."""

    # Read-only members: adapters only read them, so a frozen Account fits as well as a model row.
    @property
    def external_id(self) -> str: ...
    @property
    def currency_code(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def manager_customer_id(self) -> str: ...


@dataclass(frozen=True)
class Account:
    """An ad account as the platform reports it (also usable as an AccountRef)."""

    platform: str
    external_id: str
    name: str
    currency_code: str
    time_zone: str
    manager_customer_id: str = ""
    is_manager: bool = False


@dataclass(frozen=True)
class CampaignInfo:
    external_id: str
    name: str
    status: str  # "enabled" | "paused" | "removed"
    daily_budget_micros: int | None
    budget_micros: int | None = None  # lifetime budget, when the platform has one
    budget_external_id: str = ""  # Google campaign budget id
    budget_is_shared: bool = False
    # Meta: "campaign" when the campaign holds the budget (CBO), "ad_set" when its ad
    # sets do (then each ad set's budget is changed instead).
    budget_level: str = "campaign"
    # Lifetime budgets: what is left of it and when it ends (both platforms refuse a
    # lifetime budget below what is already spent, or without an end).
    budget_remaining_micros: int | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class AdGroupInfo:
    """The level below a campaign: a Google ad group or a Meta ad set.

    Google ad groups hold no budget; a Meta ad set holds a daily or a lifetime budget when its
    campaign does not (ABO).
    """

    external_id: str
    campaign_external_id: str
    name: str
    status: str  # "enabled" | "paused" | "removed"
    daily_budget_micros: int | None = None
    lifetime_budget_micros: int | None = None
    budget_remaining_micros: int | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class ChangeTarget:
    """What a budget or status change is made on: a campaign or an ad group / ad set."""

    level: str  # "campaign" | "ad_group"
    external_id: str
    campaign_external_id: str = ""
    budget_external_id: str = ""  # Google: the campaign budget's id (campaign level only)


@dataclass(frozen=True)
class ConversionActionInfo:
    """Where an account's conversions go: a Google conversion action or a Meta pixel (dataset)."""

    external_id: str
    name: str


@dataclass(frozen=True)
class MetricRow:
    campaign_external_id: str
    date: date  # in the account's time zone
    impressions: int
    clicks: int
    cost_micros: int
    conversions: Decimal
    conversion_value_micros: int


@dataclass(frozen=True)
class AdGroupMetricRow:
    """Daily metrics of one ad group / ad set. Kept apart from campaign rows: a campaign's
    totals come from its own rows only, so nothing is counted at both levels."""

    ad_group_external_id: str
    campaign_external_id: str
    date: date
    impressions: int
    clicks: int
    cost_micros: int
    conversions: Decimal
    conversion_value_micros: int


@dataclass(frozen=True)
class StatusUpdate:
    """The platform's confirmation of a status change (or, validate-only, that it would pass)."""

    target: ChangeTarget
    status: str  # "enabled" | "paused"
    validated_only: bool = False
    resource: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetUpdate:
    """The platform's confirmation of a budget change."""

    campaign_external_id: str
    daily_budget_micros: int | None
    resource: str = ""  # Google budget resource name / Meta object id
    raw: dict[str, Any] = field(default_factory=dict)
    lifetime_budget_micros: int | None = None
    validated_only: bool = False  # validate-only: the platform checked it and changed nothing
    target: ChangeTarget | None = None


@dataclass(frozen=True)
class ClickConversion:
    """A Google Ads click conversion. Identifiers are already normalized and hashed."""

    conversion_action_id: str
    conversion_date_time: datetime  # aware; the moment it happened
    gclid: str = ""
    gbraid: str = ""
    wbraid: str = ""
    conversion_value: Decimal | None = None
    currency_code: str = ""
    order_id: str = ""
    hashed_email: str = ""
    hashed_phone: str = ""
    consent_ad_user_data: str = ""  # "GRANTED" | "DENIED" | ""
    consent_ad_personalization: str = ""


@dataclass(frozen=True)
class ConversionEvent:
    """A Meta Conversions API event. ``user_data`` keys are Meta's (em, ph, fn, ...),
    hashed where Meta hashes them; external ids, IP, user agent, fbc and fbp as given."""

    event_name: str
    event_time: int  # unix seconds
    event_id: str
    action_source: str
    event_source_url: str = ""
    user_data: dict[str, str] = field(default_factory=dict)
    custom_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowOutcome:
    """What happened to one uploaded row, by its index in the request."""

    index: int
    status: str  # "uploaded" | "duplicate" | "rejected"
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class UploadResult:
    outcomes: list[RowOutcome]
    request_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AdPlatform(Protocol):
    """One ad platform behind the official SDK. Every method may raise PlatformError subclasses."""

    platform: str

    def check_credentials(self) -> None:
        """Raise AuthError if the credentials do not work, TransientError if unreachable."""

    def list_accounts(self) -> list[Account]:
        """The ad accounts the credentials reach (Google: under the manager; Meta: the business)."""

    def list_campaigns(self, account: AccountRef) -> Iterator[CampaignInfo]:
        """Every campaign of the account (removed ones included), with budgets."""

    def get_campaign(self, account: AccountRef, campaign_external_id: str) -> CampaignInfo:
        """The platform's current view of one campaign (read before changing a budget)."""

    def iter_daily_metrics(self, account: AccountRef, date_from: date, date_to: date) -> Iterator[MetricRow]:
        """Daily campaign metrics, streamed; dates inclusive, in the account's time zone."""

    def update_daily_budget(
        self, account: AccountRef, campaign: CampaignInfo, new_daily_budget_micros: int
    ) -> BudgetUpdate:
        """Change the daily budget; returns only once the platform confirmed it."""

    def list_conversion_actions(self, account: AccountRef) -> list[ConversionActionInfo]:
        """Google: the account's conversion actions. Meta: the pixels the ad account may send to."""

    def list_ad_groups(self, account: AccountRef) -> Iterator[AdGroupInfo]:
        """Every ad group (Google) / ad set (Meta) of the account, removed ones included."""

    def get_ad_group(self, account: AccountRef, ad_group_external_id: str) -> AdGroupInfo:
        """The platform's current view of one ad group / ad set."""

    def iter_ad_group_daily_metrics(
        self, account: AccountRef, date_from: date, date_to: date
    ) -> Iterator[AdGroupMetricRow]:
        """Daily ad group / ad set metrics, streamed; dates inclusive, in the account's time zone."""

    def update_budget(
        self,
        account: AccountRef,
        target: ChangeTarget,
        *,
        daily_budget_micros: int | None = None,
        lifetime_budget_micros: int | None = None,
        validate_only: bool = False,
    ) -> BudgetUpdate:
        """Set the daily or the lifetime budget (exactly one) of a campaign or ad set.

        Returns once the platform confirmed it; with ``validate_only`` the platform checks it
        (Google ``validate_only``, Meta ``execution_options=["validate_only"]``) and changes
        nothing. A refusal raises PermanentError with the platform's code and message.
        """

    def update_status(
        self, account: AccountRef, target: ChangeTarget, status: str, *, validate_only: bool = False
    ) -> StatusUpdate:
        """Pause or enable (``"paused"`` | ``"enabled"``) a campaign or ad group / ad set."""

    def upload_conversions(
        self, account: AccountRef, conversions: Sequence[Any], *, destination_id: str = ""
    ) -> UploadResult:
        """Google: ClickConversion rows (≤ 2,000). Meta: ConversionEvent rows (≤ 1,000) to the
        pixel/dataset ``destination_id``. One RowOutcome per row, by index."""
