"""Meta Marketing API + Conversions API behind ``AdPlatform``, on the official facebook-business SDK.

The SDK runs unpatched. Three choices keep it safe to use from a long-lived, multi-tenant
process:

* **One ``FacebookAdsApi`` per adapter**, never ``FacebookAdsApi.init()``: ``init`` sets a
  process-wide default API and (unless ``crash_log=False``) installs the SDK's own
  ``sys.excepthook``, which would report our crashes to Meta. Every SDK object here gets
  ``api=self._api`` explicitly.
* **Graph base URL per adapter.** The SDK documents ``FacebookSession.GRAPH`` as a class
  attribute, but ``FacebookAdsApi.call`` reads it as ``self._session.GRAPH``, so we set it on
  *our* session instance: two adapters in one process (real Graph and the sandbox, or two
  sandboxes in tests) do not interfere. Only SDK paths we never use read the class attribute
  (``EventRequest`` with a custom ``http_client``, catalog and targeting search helpers).
  ``EventRequest.execute()`` itself goes through the *default* API, so conversions are sent
  with the very call it makes (``AdsPixel(pixel).create_event(params=...)``) on our API.
* **Secrets never reach logs or messages.** The SDK sends the access token and appsecret_proof
  as query parameters on every request, and urllib3 logs request URLs at DEBUG while requests'
  connection errors quote them. A logging filter on those loggers redacts them, and every
  error we raise is built from scrubbed text with the original exception dropped (``from None``).

Throttling: every answer's X-App-Usage, X-Business-Use-Case-Usage and X-Ad-Account-Usage
headers are read by a ``requests`` response hook on the SDK's session (see ``UsageThrottle``).
Above ``throttle_threshold_pct`` (90 %) the adapter sleeps before the next call, longer the
closer usage is to 100 %; when Meta announces ``estimated_time_to_regain_access`` (or usage
reaches 100 %) the next call raises ``RateLimitedError`` *before* it is sent, so a sync stops
instead of digging the hole deeper.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.adspixel import AdsPixel
from facebook_business.adobjects.business import Business
from facebook_business.adobjects.campaign import Campaign
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.gender import Gender
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.adobjects.user import User
from facebook_business.api import Cursor, FacebookAdsApi
from facebook_business.exceptions import FacebookBadObjectError, FacebookError, FacebookRequestError
from facebook_business.session import FacebookSession
from urllib3.exceptions import ProtocolError

from platforms.base import (
    Account,
    AccountRef,
    AdGroupInfo,
    AdGroupMetricRow,
    AuthError,
    BudgetUpdate,
    CampaignInfo,
    ChangeTarget,
    ConversionActionInfo,
    ConversionEvent,
    MetricRow,
    PermanentError,
    PlatformError,
    RateLimitedError,
    RowOutcome,
    StatusUpdate,
    TransientError,
    UploadResult,
    micros_to_minor,
    minor_to_micros,
    units_to_micros,
)
from platforms.registry import MetaConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM = "meta"
MAX_EVENTS_PER_REQUEST = 1_000

# Graph error codes (developers.facebook.com/docs/graph-api/guides/error-handling and
# .../overview/rate-limiting): 4 app limit, 17 user limit, 32 page limit, 341 application limit,
# 613 custom rate limit, 80000-80014 Business Use Case limits (80000 ads insights, 80004 ads
# management, 80003 custom audiences, ...).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613, *range(80_000, 80_015)})
# 190 invalid/expired token (subcodes 458-467 say why), 102 session key invalid, 2635 an API
# version Meta no longer serves (a setting to change, not a retry).
AUTH_CODES = frozenset({102, 190, 463, 467, 2635})
AUTH_SUBCODES = frozenset({458, 459, 460, 463, 464, 467})
# 10 and 200-299: the token lacks a permission (ads_read, ads_management, business_management).
PERMISSION_CODES = frozenset({10, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})  # "unknown error" and "service temporarily unavailable"
DEFAULT_RETRY_AFTER_SECONDS = 60.0

# Conversions read from insights ``actions``: for each group the first type present counts.
# Meta reports an aggregate next to its parts ("purchase" includes
# "offsite_conversion.fb_pixel_purchase"; "omni_purchase" adds on-Meta purchases), so summing a
# group would count a conversion two or three times.
CONVERSION_ACTION_GROUPS: tuple[tuple[str, ...], ...] = (
    ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase"),
    ("lead", "offsite_conversion.fb_pixel_lead"),
)

CAMPAIGN_FIELDS = [
    "id",
    "account_id",
    "name",
    "status",
    "effective_status",
    "daily_budget",
    "lifetime_budget",
    "budget_remaining",
    "stop_time",
]
ADSET_FIELDS = [
    "id",
    "account_id",
    "campaign_id",
    "name",
    "status",
    "effective_status",
    "daily_budget",
    "lifetime_budget",
    "budget_remaining",
    "end_time",
]
INSIGHT_FIELDS = ["campaign_id", "date_start", "impressions", "clicks", "spend", "actions", "action_values"]
ADSET_INSIGHT_FIELDS = ["adset_id", *INSIGHT_FIELDS]

ACCOUNT_FIELDS = ["id", "account_id", "name", "currency", "timezone_name"]
# Without an effective_status filter Graph leaves archived and deleted campaigns out; the
# AdPlatform contract lists them too (as "removed").
ALL_CAMPAIGN_STATUSES = ["ACTIVE", "PAUSED", "IN_PROCESS", "WITH_ISSUES", "ARCHIVED", "DELETED"]
_STATUS_MAP = {"ACTIVE": "enabled", "PAUSED": "paused", "ARCHIVED": "removed", "DELETED": "removed"}
ALL_ADSET_STATUSES = [*ALL_CAMPAIGN_STATUSES, "CAMPAIGN_PAUSED"]
_SETTABLE_STATUSES = {"enabled": "ACTIVE", "paused": "PAUSED"}
_GRAPH_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

# UserData keys of ConversionEvent → UserData's list arguments (the SDK hashes these unless the
# value already is a SHA-256/MD5 hex digest, which it passes through lowercased).
_HASHED_USER_FIELDS = {
    "em": "emails",
    "ph": "phones",
    "fn": "first_names",
    "ln": "last_names",
    "ct": "cities",
    "st": "states",
    "zp": "zip_codes",
    "country": "country_codes",
    "db": "dates_of_birth",
}
_PLAIN_USER_LIST_FIELDS = {"external_id": "external_ids"}
_PLAIN_USER_FIELDS = ("client_ip_address", "client_user_agent", "fbc", "fbp", "lead_id", "subscription_id")
_CUSTOM_DATA_FIELDS = frozenset(
    {
        "value",
        "net_revenue",
        "currency",
        "content_name",
        "content_category",
        "content_ids",
        "content_type",
        "order_id",
        "predicted_ltv",
        "num_items",
        "status",
        "search_string",
        "item_number",
    }
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


# --- secrets out of logs ----------------------------------------------------------------------

_SECRET_QUERY_PARAM = re.compile(r"((?:access_token|appsecret_proof|client_secret)=)[^&\s'\"]+", re.IGNORECASE)
REDACTED = "[redacted]"


class _SecretRedactor(logging.Filter):
    """Rewrites log records that quote a request URL or a known secret value.

    Attached to the loggers that quote URLs (urllib3 logs every request line at DEBUG).
    A filter on a logger runs before the record reaches any handler, root's included.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, *values: str) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= 6)

    def scrub(self, text: str) -> str:
        text = _SECRET_QUERY_PARAM.sub(r"\1" + REDACTED, text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_REDACTOR = _SecretRedactor()
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests", "facebook_business")
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTOR)


def scrub_secrets(text: str) -> str:
    """``text`` with access tokens, appsecret proofs and registered secrets redacted."""
    return _REDACTOR.scrub(text)


# --- usage headers and throttling ---------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """The highest usage Meta reported on one answer, in percent, and the announced wait."""

    pct: float
    regain_seconds: float


def _json_header(headers: Any, name: str) -> Any:
    raw = headers.get(name) if headers else None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def parse_usage(headers: Any) -> Usage:
    """Read X-App-Usage, X-Business-Use-Case-Usage and X-Ad-Account-Usage (header names are
    case-insensitive in requests). ``estimated_time_to_regain_access`` is in minutes."""
    pct = 0.0
    regain = 0.0
    app = _json_header(headers, "X-App-Usage")
    if isinstance(app, dict):
        pct = max(pct, *(float(app.get(k) or 0) for k in ("call_count", "total_cputime", "total_time")))
    buc = _json_header(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else []:
                pct = max(pct, *(float(entry.get(k) or 0) for k in ("call_count", "total_cputime", "total_time")))
                regain = max(regain, float(entry.get("estimated_time_to_regain_access") or 0) * 60)
    account = _json_header(headers, "X-Ad-Account-Usage")
    if isinstance(account, dict):
        account_pct = float(account.get("acc_id_util_pct") or 0)
        pct = max(pct, account_pct)
        if account_pct >= 100:
            regain = max(regain, float(account.get("reset_time_duration") or 0))
    return Usage(pct=pct, regain_seconds=regain)


class UsageThrottle:
    """Slows down before Meta's limits instead of running into them.

    * usage ≥ ``threshold_pct``: sleep ``max_pause_seconds * (usage - threshold) / (100 - threshold)``
      right after that answer, i.e. before the next call goes out;
    * Meta announces a wait (``estimated_time_to_regain_access`` > 0) or usage reaches 100 %:
      remember until when, and refuse calls until then with ``RateLimitedError`` (``guard``).
    """

    def __init__(
        self,
        *,
        threshold_pct: float = 90.0,
        max_pause_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_pct = threshold_pct
        self.max_pause_seconds = max_pause_seconds
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self.last_usage = Usage(0.0, 0.0)

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A ``requests`` response hook: runs on every answer the SDK receives."""
        usage = parse_usage(response.headers)
        with self._lock:
            self.last_usage = usage
            if usage.regain_seconds > 0 or usage.pct >= 100:
                wait = usage.regain_seconds or DEFAULT_RETRY_AFTER_SECONDS
                self._blocked_until = max(self._blocked_until, self._clock() + wait)
                logger.warning("Meta usage at %.0f%%: pausing Meta calls for %.0f s", usage.pct, wait)
                return
        if usage.pct >= self.threshold_pct:
            share = (usage.pct - self.threshold_pct) / max(1.0, 100.0 - self.threshold_pct)
            pause = min(self.max_pause_seconds, self.max_pause_seconds * share)
            logger.info("Meta usage at %.0f%%: slowing down for %.1f s", usage.pct, pause)
            if pause > 0:
                self._sleep(pause)

    def guard(self) -> None:
        """Raise RateLimitedError while a wait Meta announced is still running."""
        with self._lock:
            remaining = self._blocked_until - self._clock()
        if remaining > 0:
            raise RateLimitedError(
                f"Meta asked to pause calls; {remaining:.0f} s left (not sent)",
                retry_after_seconds=remaining,
                sent=False,
                platform=PLATFORM,
                code="throttled",
            )


# --- the adapter ----------------------------------------------------------------------------------


def _node_id(account: AccountRef) -> str:
    return account.external_id if account.external_id.startswith("act_") else f"act_{account.external_id}"


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _json_number(value: Any) -> Any:
    # Graph takes JSON numbers; Decimal is not JSON-serialisable.
    return float(value) if isinstance(value, Decimal) else value


class MetaPlatform:
    """``AdPlatform`` for Meta. Thread-safe as far as ``requests.Session`` is (one adapter is
    shared per process by the registry)."""

    platform = PLATFORM

    def __init__(
        self,
        config: MetaConfig,
        *,
        timeout_seconds: float = 60.0,
        insights_page_size: int = 500,
        list_page_size: int = 200,
        throttle_threshold_pct: float = 90.0,
        max_throttle_pause_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._insights_page_size = insights_page_size
        self._list_page_size = list_page_size
        _REDACTOR.register(config.access_token, config.app_secret)
        session = FacebookSession(
            app_id=config.app_id or None,
            app_secret=config.app_secret or None,
            access_token=config.access_token,
            timeout=timeout_seconds,
        )
        session.GRAPH = config.graph_url.rstrip("/")  # instance attribute: see the module docstring
        self.throttle = UsageThrottle(
            threshold_pct=throttle_threshold_pct, max_pause_seconds=max_throttle_pause_seconds, sleep=sleep
        )
        session.requests.hooks["response"].append(self.throttle.observe)
        self._api = FacebookAdsApi(session, api_version=config.api_version)
        self._graph_host = urlsplit(session.GRAPH).netloc or session.GRAPH

    def __repr__(self) -> str:
        return f"MetaPlatform({self._config!r})"

    # --- AdPlatform ----------------------------------------------------------------------------

    def check_credentials(self) -> None:
        self._call("read the token's user", lambda: User(fbid="me", api=self._api).api_get(fields=["id", "name"]))
        if not self._config.business_id:
            return
        try:
            business = Business(fbid=self._config.business_id, api=self._api)
            self._call("read the business", lambda: business.api_get(fields=["id", "name"]))
        except PermanentError as exc:
            # The token works but cannot see the configured business: a setting to fix.
            raise AuthError(
                f"Business {self._config.business_id} is not reachable with this token: {exc.message}",
                platform=PLATFORM,
                code=exc.code,
                request_id=exc.request_id,
            ) from None

    def list_accounts(self) -> list[Account]:
        if not self._config.business_id:
            raise AuthError("No Meta business id is configured (META_BUSINESS_ID)", platform=PLATFORM, code="config")
        business = Business(fbid=self._config.business_id, api=self._api)
        cursor = self._first_page(
            "list the business's ad accounts",
            lambda: business.get_owned_ad_accounts(fields=ACCOUNT_FIELDS, params={"limit": self._list_page_size}),
        )
        return [
            Account(
                platform=PLATFORM,
                external_id=str(item.get("account_id") or str(item["id"]).removeprefix("act_")),
                name=item.get("name") or "",
                currency_code=str(item.get("currency") or "").upper(),
                time_zone=item.get("timezone_name") or "",
            )
            for item in self._drain(cursor, "list the business's ad accounts")
        ]

    def list_campaigns(self, account: AccountRef) -> Iterator[CampaignInfo]:
        ad_account = AdAccount(fbid=_node_id(account), api=self._api)
        params = {"limit": self._list_page_size, "effective_status": ALL_CAMPAIGN_STATUSES}
        cursor = self._first_page(
            "list campaigns", lambda: ad_account.get_campaigns(fields=CAMPAIGN_FIELDS, params=params)
        )
        for item in self._drain(cursor, "list campaigns"):
            yield self._campaign_info(item, account.currency_code)

    def get_campaign(self, account: AccountRef, campaign_external_id: str) -> CampaignInfo:
        campaign = Campaign(fbid=campaign_external_id, api=self._api)
        self._call("read the campaign", lambda: campaign.api_get(fields=CAMPAIGN_FIELDS))
        self._check_owner(account, campaign, f"Campaign {campaign_external_id}")
        return self._campaign_info(campaign, account.currency_code)

    @staticmethod
    def _check_owner(account: AccountRef, item: Any, what: str) -> None:
        owner = str(item.get("account_id") or "")
        if owner and owner != _node_id(account).removeprefix("act_"):
            raise PermanentError(
                f"{what} belongs to ad account {owner}, not {account.external_id}",
                platform=PLATFORM,
                code="wrong_account",
            )

    # --- Pixels (where conversions go) ---------------------------------------------------------

    def list_conversion_actions(self, account: AccountRef) -> list[ConversionActionInfo]:
        ad_account = AdAccount(fbid=_node_id(account), api=self._api)
        params = {"limit": self._list_page_size}
        cursor = self._first_page(
            "list the ad account's pixels", lambda: ad_account.get_ads_pixels(fields=["id", "name"], params=params)
        )
        return [
            ConversionActionInfo(external_id=str(item["id"]), name=str(item.get("name") or ""))
            for item in self._drain(cursor, "list the ad account's pixels")
        ]

    # --- Ad sets -------------------------------------------------------------------------------

    def list_ad_groups(self, account: AccountRef) -> Iterator[AdGroupInfo]:
        """Every ad set of the account (archived and deleted ones too, as "removed")."""
        ad_account = AdAccount(fbid=_node_id(account), api=self._api)
        params = {"limit": self._list_page_size, "effective_status": ALL_ADSET_STATUSES}
        cursor = self._first_page("list ad sets", lambda: ad_account.get_ad_sets(fields=ADSET_FIELDS, params=params))
        for item in self._drain(cursor, "list ad sets"):
            yield self._adset_info(item, account.currency_code)

    def get_ad_group(self, account: AccountRef, ad_group_external_id: str) -> AdGroupInfo:
        adset = AdSet(fbid=ad_group_external_id, api=self._api)
        self._call("read the ad set", lambda: adset.api_get(fields=ADSET_FIELDS))
        self._check_owner(account, adset, f"Ad set {ad_group_external_id}")
        return self._adset_info(adset, account.currency_code)

    def iter_ad_group_daily_metrics(
        self, account: AccountRef, date_from: date, date_to: date
    ) -> Iterator[AdGroupMetricRow]:
        """Ad set insights (level=adset, time_increment=1), one row per ad set and day, paged.
        The ad sets of a campaign add up to its campaign-level row."""
        for row in self._daily_insights(account, "adset", ADSET_INSIGHT_FIELDS, date_from, date_to, "ad set insights"):
            metric = self._metric_row(row)
            yield AdGroupMetricRow(
                ad_group_external_id=str(row["adset_id"]),
                campaign_external_id=metric.campaign_external_id,
                date=metric.date,
                impressions=metric.impressions,
                clicks=metric.clicks,
                cost_micros=metric.cost_micros,
                conversions=metric.conversions,
                conversion_value_micros=metric.conversion_value_micros,
            )

    def iter_daily_metrics(self, account: AccountRef, date_from: date, date_to: date) -> Iterator[MetricRow]:
        """Campaign-level insights, one row per campaign and day, streamed page by page.
        ``date_start`` is the day in the ad account's time zone, as Meta reports it."""
        for row in self._daily_insights(account, "campaign", INSIGHT_FIELDS, date_from, date_to, "insights"):
            yield self._metric_row(row)

    def _daily_insights(
        self,
        account: AccountRef,
        level: str,
        fields: Sequence[str],
        date_from: date,
        date_to: date,
        what: str,
    ) -> Iterator[Any]:
        """The insights rows of ``level`` per day of the window (time_increment=1), page by page."""
        if date_from > date_to:
            raise ValueError(f"date_from {date_from} is after date_to {date_to}")
        ad_account = AdAccount(fbid=_node_id(account), api=self._api)
        params = {
            "level": level,
            "time_increment": 1,
            "time_range": {"since": date_from.isoformat(), "until": date_to.isoformat()},
            "limit": self._insights_page_size,
        }
        cursor = self._first_page(f"read {what}", lambda: ad_account.get_insights(fields=list(fields), params=params))
        return self._drain(cursor, f"read {what}")

    def update_daily_budget(
        self, account: AccountRef, campaign: CampaignInfo, new_daily_budget_micros: int
    ) -> BudgetUpdate:
        if campaign.budget_level == "ad_set":
            raise PermanentError(
                f"Campaign {campaign.external_id} has no campaign budget: its ad sets hold the budgets",
                platform=PLATFORM,
                code="budget_on_ad_sets",
            )
        try:
            minor = micros_to_minor(new_daily_budget_micros, account.currency_code)
        except ValueError as exc:
            raise PermanentError(str(exc), platform=PLATFORM, code="not_a_whole_minor_unit") from None
        if minor <= 0:
            raise PermanentError("A daily budget must be positive", platform=PLATFORM, code="invalid_budget")
        target = ChangeTarget("campaign", campaign.external_id, campaign.external_id)
        return self.update_budget(account, target, daily_budget_micros=new_daily_budget_micros)

    def update_budget(
        self,
        account: AccountRef,
        target: ChangeTarget,
        *,
        daily_budget_micros: int | None = None,
        lifetime_budget_micros: int | None = None,
        validate_only: bool = False,
    ) -> BudgetUpdate:
        """``POST <campaign|adset>`` with daily_budget or lifetime_budget in minor units.

        Meta decides: its refusals (budget too low for the currency 100/1885272, an ad set budget
        while the campaign holds the budget 100/1885621, a lifetime budget below what was spent
        100/1885650, a budget on a campaign whose ad sets hold them, switching daily/lifetime: 100)
        come back as PermanentError with code "<code>/<subcode>" and Meta's own words. A real
        change is confirmed by reading the object back.
        """
        if (daily_budget_micros is None) == (lifetime_budget_micros is None):
            raise ValueError("Give exactly one of daily_budget_micros and lifetime_budget_micros")
        name = "daily_budget" if daily_budget_micros is not None else "lifetime_budget"
        micros = daily_budget_micros if daily_budget_micros is not None else lifetime_budget_micros
        assert micros is not None
        try:
            minor = micros_to_minor(micros, account.currency_code)
        except ValueError as exc:
            raise PermanentError(str(exc), platform=PLATFORM, code="not_a_whole_minor_unit") from None
        params: dict[str, Any] = {name: minor}
        if validate_only:
            params["execution_options"] = ["validate_only"]
        node = self._writable(target)
        what = f"{'check' if validate_only else 'update'} the {name.replace('_', ' ')}"
        self._call(what, lambda: node.api_update(params=params))
        expected = minor_to_micros(minor, account.currency_code)
        campaign_id = target.campaign_external_id or (target.external_id if target.level == "campaign" else "")
        raw = {name: str(minor), "currency": account.currency_code}
        if not validate_only:
            # Confirm with a fresh read: what the next sync will see is what we report.
            confirmed = self._read_back(account, target)
            seen = confirmed.daily_budget_micros if name == "daily_budget" else self._lifetime_of(confirmed)
            if seen != expected:
                raise TransientError(
                    f"Meta accepted the {name.replace('_', ' ')} of {target.level} {target.external_id} but reads "
                    f"back {seen} micros instead of {expected}",
                    platform=PLATFORM,
                    code="not_confirmed",
                )
            campaign_id = campaign_id or getattr(confirmed, "campaign_external_id", "")
        logger.info(
            "Meta %s %s %s set to %s%s",
            target.level,
            target.external_id,
            name,
            minor,
            " (validate only)" if validate_only else "",
        )
        return BudgetUpdate(
            campaign_external_id=campaign_id,
            daily_budget_micros=expected if name == "daily_budget" else None,
            lifetime_budget_micros=expected if name == "lifetime_budget" else None,
            resource=target.external_id,
            raw=raw,
            validated_only=validate_only,
            target=target,
        )

    def update_status(
        self, account: AccountRef, target: ChangeTarget, status: str, *, validate_only: bool = False
    ) -> StatusUpdate:
        """``POST <campaign|adset>`` status=ACTIVE|PAUSED; a real change is read back."""
        if status not in _SETTABLE_STATUSES:
            raise ValueError(f"status must be one of {sorted(_SETTABLE_STATUSES)}, not {status!r}")
        params: dict[str, Any] = {"status": _SETTABLE_STATUSES[status]}
        if validate_only:
            params["execution_options"] = ["validate_only"]
        node = self._writable(target)
        self._call(f"{'check' if validate_only else 'update'} the status", lambda: node.api_update(params=params))
        if not validate_only:
            seen = self._read_back(account, target).status
            if seen != status:
                raise TransientError(
                    f"Meta accepted the status of {target.level} {target.external_id} but reads back {seen!r}",
                    platform=PLATFORM,
                    code="not_confirmed",
                )
        logger.info(
            "Meta %s %s status set to %s%s",
            target.level,
            target.external_id,
            params["status"],
            " (validate only)" if validate_only else "",
        )
        return StatusUpdate(
            target=target, status=status, validated_only=validate_only, resource=target.external_id, raw=params
        )

    def _writable(self, target: ChangeTarget) -> Campaign | AdSet:
        if target.level == "campaign":
            return Campaign(fbid=target.external_id, api=self._api)
        if target.level == "ad_group":
            return AdSet(fbid=target.external_id, api=self._api)
        raise ValueError(f"level must be 'campaign' or 'ad_group', not {target.level!r}")

    def _read_back(self, account: AccountRef, target: ChangeTarget) -> CampaignInfo | AdGroupInfo:
        if target.level == "campaign":
            return self.get_campaign(account, target.external_id)
        return self.get_ad_group(account, target.external_id)

    @staticmethod
    def _lifetime_of(info: CampaignInfo | AdGroupInfo) -> int | None:
        return info.budget_micros if isinstance(info, CampaignInfo) else info.lifetime_budget_micros

    def upload_conversions(
        self, account: AccountRef, conversions: Sequence[Any], *, destination_id: str = ""
    ) -> UploadResult:
        """Conversions API events to the pixel/dataset ``destination_id``.

        Rows that cannot be built locally are "rejected" and not sent; the rest go in one
        request. Meta answers with a count, not per event: when ``events_received`` covers
        every event sent they are all "uploaded" (Meta dedupes on event_name + event_id, so a
        resend after a lost answer is safe). A whole-request refusal raises PermanentError
        whose ``details["outcomes"]`` marks the guilty row when Meta names its index.
        """
        if not destination_id:
            raise ValueError("destination_id (the pixel or dataset id) is required for Meta")
        if len(conversions) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(
                f"Meta accepts at most {MAX_EVENTS_PER_REQUEST} events per request; got {len(conversions)}"
            )
        outcomes: dict[int, RowOutcome] = {}
        sent_indexes: list[int] = []
        payloads: list[str] = []
        for index, conversion in enumerate(conversions):
            try:
                payloads.append(json.dumps(self._event_payload(conversion)))
                sent_indexes.append(index)
            except (TypeError, ValueError, KeyError) as exc:
                outcomes[index] = RowOutcome(index, "rejected", code="invalid_event", message=scrub_secrets(str(exc)))
        if not payloads:
            return UploadResult(outcomes=[outcomes[i] for i in range(len(conversions))])
        # EventRequest builds the request parameters; its execute() would use the process-wide
        # default API, so the same create_event call is made on this adapter's API.
        event_request = EventRequest(pixel_id=destination_id, events=[])
        params = {**event_request.get_request_params(), "data": payloads}
        try:
            pixel = AdsPixel(fbid=destination_id, api=self._api)
            answer = self._call("upload conversions", lambda: pixel.create_event(fields=[], params=params))
        except PermanentError as exc:
            guilty = self._refused_event_index(exc, sent_indexes)
            for index in sent_indexes:
                if index == guilty:
                    outcomes[index] = RowOutcome(index, "rejected", code=exc.code, message=exc.message)
                else:
                    reason = f"not stored: Meta refused the whole request ({exc.message})"
                    if guilty is not None:
                        reason = f"not stored: Meta refused the whole request because of row {guilty}"
                    outcomes[index] = RowOutcome(index, "rejected", code="request_refused", message=reason)
            exc.details = {**(exc.details or {}), "outcomes": [outcomes[i] for i in range(len(conversions))]}
            raise
        received = int(answer.get("events_received") or 0)
        for index in sent_indexes:
            if received >= len(sent_indexes):
                outcomes[index] = RowOutcome(index, "uploaded")
            else:
                outcomes[index] = RowOutcome(
                    index,
                    "rejected",
                    code="not_acknowledged",
                    message=f"Meta acknowledged {received} of {len(sent_indexes)} events without naming them",
                )
        return UploadResult(
            outcomes=[outcomes[i] for i in range(len(conversions))],
            request_id=str(answer.get("fbtrace_id") or ""),
            raw={"events_received": received, "messages": list(answer.get("messages") or [])},
        )

    # --- SDK plumbing ------------------------------------------------------------------------------

    def _call(self, what: str, sdk_call: Callable[[], T], *, guard: bool = True) -> T:
        """Run one SDK call; turn every failure into the PlatformError that says what to do."""
        if guard:
            self.throttle.guard()
        error: PlatformError | None = None
        try:
            return sdk_call()
        except FacebookRequestError as exc:
            error = self._translate(exc, what)
        except requests.Timeout:
            error = TransientError(f"Meta did not answer in time ({what})", platform=PLATFORM, code="timeout")
        except requests.RequestException as exc:
            if exc.args and isinstance(exc.args[0], ProtocolError):
                # Sent, then the connection dropped before the answer: the change may have been
                # applied (re-read before retrying a write; events are deduplicated by Meta).
                error = TransientError(
                    f"The connection to {self._graph_host} dropped before Meta answered ({what})",
                    platform=PLATFORM,
                    code="connection_dropped",
                )
            else:
                error = TransientError(
                    f"Could not reach the Graph API at {self._graph_host} ({what}): {type(exc).__name__}",
                    platform=PLATFORM,
                    code="unreachable",
                )
        except FacebookBadObjectError as exc:  # e.g. an API version setting the SDK cannot use
            error = AuthError(f"Meta SDK refused the call ({what}): {scrub_secrets(str(exc))}", platform=PLATFORM)
        except FacebookError as exc:
            error = PermanentError(f"Meta SDK refused the call ({what}): {scrub_secrets(str(exc))}", platform=PLATFORM)
        logger.warning("Meta call failed: %s (%s)", error, type(error).__name__)
        # Raised after the except blocks, so the SDK/requests exception (whose text and
        # traceback quote the request URL, access token included) is not chained as context.
        raise error

    def _translate(self, exc: FacebookRequestError, what: str) -> PlatformError:
        code = exc.api_error_code()
        subcode = exc.api_error_subcode()
        body = exc.body() if isinstance(exc.body(), dict) else {}
        error = body.get("error") or {}
        status = exc.http_status() or 0
        text = exc.api_error_message() or f"HTTP {status}"
        if error.get("error_user_msg"):  # the human explanation Graph adds to "Invalid parameter"
            title = error.get("error_user_title")
            text = f"{text}: {title} - {error['error_user_msg']}" if title else f"{text}: {error['error_user_msg']}"
        message = scrub_secrets(f"{text} ({what})")
        kwargs: dict[str, Any] = {
            "platform": PLATFORM,
            "code": f"{code}/{subcode}" if subcode else str(code or status),
            "request_id": str(error.get("fbtrace_id") or ""),
            "details": {
                "http_status": status,
                "type": exc.api_error_type(),
                "error_code": code,
                "error_subcode": subcode,
                "error_data": self._error_data(error),
            },
        }
        if code in RATE_LIMIT_CODES or status == 429:
            usage = parse_usage(exc.http_headers())
            retry_after = usage.regain_seconds or DEFAULT_RETRY_AFTER_SECONDS
            return RateLimitedError(message, retry_after_seconds=retry_after, **kwargs)
        if (
            code in AUTH_CODES
            or subcode in AUTH_SUBCODES
            or code in PERMISSION_CODES
            or (code == 100 and "appsecret_proof" in text)
        ):
            return AuthError(message, **kwargs)
        if exc.api_transient_error() or code in TRANSIENT_CODES or status >= 500:
            return TransientError(message, **kwargs)
        return PermanentError(message, **kwargs)

    @staticmethod
    def _error_data(error: dict[str, Any]) -> dict[str, Any]:
        data = error.get("error_data")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _refused_event_index(exc: PermanentError, sent_indexes: list[int]) -> int | None:
        """The caller's row index of the event Meta blamed, when its error names one."""
        details = exc.details if isinstance(exc.details, dict) else {}
        position = (details.get("error_data") or {}).get("event_index")
        if isinstance(position, int) and 0 <= position < len(sent_indexes):
            return sent_indexes[position]
        return None

    def _first_page(self, what: str, start: Callable[[], Cursor]) -> Cursor:
        # The SDK's get_<edge>() fetches the first page before returning the cursor.
        return self._call(what, start)

    def _drain(self, cursor: Cursor, what: str) -> Iterator[Any]:
        """Yield a cursor's objects; the SDK fetches the next page (resending the request with
        ``after``) when the current one is used up, so failures surface here too."""
        done = object()
        while True:
            # Only a page fetch needs the throttle guard; buffered rows are already here.
            item = self._call(what, lambda: next(cursor, done), guard=len(cursor) == 0)
            if item is done:
                return
            yield item

    @staticmethod
    def _campaign_info(item: Any, currency: str) -> CampaignInfo:
        daily = _minor(item.get("daily_budget"))
        lifetime = _minor(item.get("lifetime_budget"))
        remaining = _minor(item.get("budget_remaining"), zero_is_none=False)
        return CampaignInfo(
            external_id=str(item["id"]),
            name=item.get("name") or "",
            status=_status_of(item),
            daily_budget_micros=None if daily is None else minor_to_micros(daily, currency),
            budget_micros=None if lifetime is None else minor_to_micros(lifetime, currency),
            # ABO: neither budget on the campaign; each ad set's is changed instead.
            budget_level="campaign" if daily is not None or lifetime is not None else "ad_set",
            budget_remaining_micros=(
                minor_to_micros(remaining, currency) if lifetime is not None and remaining is not None else None
            ),
            end_time=_graph_time(item.get("stop_time")) if lifetime is not None else None,
        )

    @staticmethod
    def _adset_info(item: Any, currency: str) -> AdGroupInfo:
        daily = _minor(item.get("daily_budget"))
        lifetime = _minor(item.get("lifetime_budget"))
        remaining = _minor(item.get("budget_remaining"), zero_is_none=False)
        return AdGroupInfo(
            external_id=str(item["id"]),
            campaign_external_id=str(item.get("campaign_id") or ""),
            name=item.get("name") or "",
            status=_status_of(item),
            daily_budget_micros=None if daily is None else minor_to_micros(daily, currency),
            lifetime_budget_micros=None if lifetime is None else minor_to_micros(lifetime, currency),
            budget_remaining_micros=(
                minor_to_micros(remaining, currency) if lifetime is not None and remaining is not None else None
            ),
            end_time=_graph_time(item.get("end_time")) if lifetime is not None else None,
        )

    @staticmethod
    def _metric_row(row: Any) -> MetricRow:
        actions = row.get("actions") or []
        values = row.get("action_values") or []
        return MetricRow(
            campaign_external_id=str(row["campaign_id"]),
            date=date.fromisoformat(row["date_start"]),
            impressions=int(row.get("impressions") or 0),
            clicks=int(row.get("clicks") or 0),
            cost_micros=units_to_micros(row.get("spend") or "0"),  # currency units, as a decimal string
            conversions=_conversions(actions),
            conversion_value_micros=units_to_micros(_conversions(values)),
        )

    @staticmethod
    def _event_payload(conversion: ConversionEvent) -> dict[str, Any]:
        """One event as the SDK normalizes it (Event.normalize, as EventRequest.normalize does)."""
        user_kwargs: dict[str, Any] = {}
        hashed_genders: list[str] = []
        for key, value in conversion.user_data.items():
            if key in _HASHED_USER_FIELDS:
                user_kwargs[_HASHED_USER_FIELDS[key]] = _as_list(value)
            elif key in _PLAIN_USER_LIST_FIELDS:
                user_kwargs[_PLAIN_USER_LIST_FIELDS[key]] = _as_list(value)
            elif key in _PLAIN_USER_FIELDS:
                user_kwargs[key] = value
            elif key == "ge":
                # UserData only takes Gender enums (which it hashes); an already-hashed gender
                # is added to the normalized payload as is.
                for gender in _as_list(value):
                    if _SHA256_HEX.match(gender.lower()):
                        hashed_genders.append(gender.lower())
                    else:
                        user_kwargs.setdefault("genders", []).append(Gender(gender.lower()))
            else:
                raise ValueError(f"Unknown Meta user_data key {key!r}")
        custom = {k: _json_number(v) for k, v in conversion.custom_data.items() if k in _CUSTOM_DATA_FIELDS}
        extra = {k: _json_number(v) for k, v in conversion.custom_data.items() if k not in _CUSTOM_DATA_FIELDS}
        event = Event(
            event_name=conversion.event_name,
            event_time=int(conversion.event_time),
            event_id=conversion.event_id or None,
            event_source_url=conversion.event_source_url or None,
            action_source=ActionSource(conversion.action_source),
            user_data=UserData(**user_kwargs),
            custom_data=CustomData(**custom, custom_properties=extra) if custom or extra else None,
        )
        payload: dict[str, Any] = event.normalize()
        if hashed_genders:
            user = payload.setdefault("user_data", {})
            user["ge"] = sorted(set(user.get("ge", [])) | set(hashed_genders))
        return payload


def _minor(value: Any, *, zero_is_none: bool = True) -> int | None:
    """A budget as Graph sends it (minor units as a string); "0" or absent means none."""
    if value in (None, "") or (zero_is_none and str(value) == "0"):
        return None
    return int(value)


def _status_of(item: Any) -> str:
    status = _STATUS_MAP.get(str(item.get("status") or ""), "")
    if not status:  # an effective status only ("IN_PROCESS", "WITH_ISSUES"): it runs
        status = _STATUS_MAP.get(str(item.get("effective_status") or ""), "enabled")
    return status


def _graph_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), _GRAPH_TIME_FORMAT) if value else None
    except ValueError:
        return None


def _conversions(actions: list[Any]) -> Decimal:
    """Sum over CONVERSION_ACTION_GROUPS of the first action type present in each group."""
    by_type = {a.get("action_type"): a.get("value") for a in actions if isinstance(a, Mapping)}
    total = Decimal(0)
    for group in CONVERSION_ACTION_GROUPS:
        for action_type in group:
            if by_type.get(action_type) not in (None, ""):
                total += Decimal(str(by_type[action_type]))
                break
    return total
