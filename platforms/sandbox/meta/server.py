"""A Graph API emulator over plain HTTP, serving exactly what facebook-business sends.

The SDK builds ``<GRAPH>/<version>/<node>/<edge>`` URLs, sends the access token (and
appsecret_proof) as query parameters on every request, GET parameters in the query string,
POST parameters as a form body, list/dict parameters JSON-encoded, and pages by resending
the request with ``after`` taken from ``paging.cursors.after`` while ``paging.next`` exists.

Ad objects: accounts, campaigns and ad sets (``act_<id>/campaigns``, ``act_<id>/adsets``,
``<campaign>/adsets``, ``<campaign>``, ``<adset>``), insights at account, campaign and ad set
level on the account's, a campaign's or an ad set's own ``insights`` edge, with ``time_range``
or ``date_preset`` and ``time_increment`` 1 or all_days. A ``fields=`` name the node does not
have is refused (#100 "Tried accessing nonexisting field"), as is a POST parameter an update does
not take. ``POST <campaign|adset>`` changes status and budgets for real, with Meta's checks
(minimum daily budget per currency, lifetime budget not below what was spent, an ad set budget
only when its campaign holds none); ``execution_options=["validate_only"]`` runs every check
and changes nothing.

Errors use Graph's body shape ``{"error": {message, type, code, error_subcode, is_transient,
fbtrace_id}}`` and every answer carries the usage headers (X-App-Usage,
X-Business-Use-Case-Usage, X-Ad-Account-Usage) a well-behaved client slows down on.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from platforms.base import minor_unit_micros
from platforms.budget_rules import meta_min_daily_budget_micros
from platforms.sandbox import credentials
from platforms.sandbox.faults import Faults
from platforms.sandbox.meta import oauth as meta_oauth
from platforms.sandbox.meta.data import (
    DayCounts,
    MetaSandboxData,
    SandboxAccount,
    SandboxAdSet,
    SandboxCampaign,
    adset_day_counts,
    flight,
    format_minor,
    graph_time,
    insight_row,
    spent_minor,
)
from platforms.sandbox.meta.data import (
    campaign_day as _campaign_day,
)

logger = logging.getLogger(__name__)

# The Conversions API events the emulator stored, as JSON: `curl http://127.0.0.1:<port>/_sandbox/events`.
INSPECT_EVENTS_PATH = "/_sandbox/events"
SUPPORTED_VERSIONS = frozenset({"v24.0", "v25.0", "v26.0"})
SANDBOX_USER_ID = "100000000000099"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 5_000
MAX_EVENTS_PER_REQUEST = 1_000
EVENT_MAX_AGE_SECONDS = 7 * 24 * 3600
EVENT_FUTURE_TOLERANCE_SECONDS = 60
DEDUPE_WINDOW_SECONDS = 48 * 3600
# What the campaigns edge returns without an effective_status filter: deleted and archived
# objects only come back when asked for.
DEFAULT_CAMPAIGN_STATUSES = frozenset({"ACTIVE", "PAUSED", "IN_PROCESS", "WITH_ISSUES"})
DEFAULT_ADSET_STATUSES = DEFAULT_CAMPAIGN_STATUSES | {"CAMPAIGN_PAUSED"}

# The fields each node type serves (a subset of Graph's; unknown ones are refused, not dropped).
ACCOUNT_FIELDS = frozenset(
    {"id", "account_id", "name", "currency", "timezone_name", "account_status", "business", "min_daily_budget"}
)
PIXEL_FIELDS = frozenset(("id", "name"))
CAMPAIGN_FIELDS = frozenset(
    {
        "id", "account_id", "name", "status", "effective_status", "configured_status", "objective",
        "daily_budget", "lifetime_budget", "budget_remaining", "start_time", "stop_time", "buying_type",
    }
)  # fmt: skip
ADSET_FIELDS = frozenset(
    {
        "id", "account_id", "campaign_id", "name", "status", "effective_status", "configured_status",
        "daily_budget", "lifetime_budget", "budget_remaining", "start_time", "end_time",
    }
)  # fmt: skip
INSIGHT_FIELDS = frozenset(
    {
        "account_id", "campaign_id", "campaign_name", "adset_id", "adset_name", "date_start", "date_stop",
        "impressions", "clicks", "spend", "actions", "action_values",
    }
)  # fmt: skip
# What an update (POST <id>) takes besides the credentials; anything else is refused.
_CREDENTIAL_PARAMS = frozenset({"access_token", "appsecret_proof"})
CAMPAIGN_UPDATE_PARAMS = frozenset(
    {
        "name", "status", "daily_budget", "lifetime_budget", "spend_cap", "bid_strategy", "start_time",
        "stop_time", "special_ad_categories", "adlabels", "execution_options",
    }
)  # fmt: skip
ADSET_UPDATE_PARAMS = frozenset(
    {
        "name", "status", "daily_budget", "lifetime_budget", "start_time", "end_time", "bid_amount",
        "bid_strategy", "targeting", "optimization_goal", "billing_event", "adlabels", "execution_options",
    }
)  # fmt: skip
EXECUTION_OPTIONS = frozenset({"validate_only", "include_recommendations", "synchronous_ad_review"})
STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED")
# Budget refusals (error 100 with these subcodes): too low for the currency (1885272, as Graph
# answers "Your budget is too low"), an ad set budget under a campaign budget (1885621), a
# lifetime budget below what was already spent (1885650).
SUBCODE_BUDGET_TOO_LOW = 1885272
SUBCODE_CAMPAIGN_HOLDS_BUDGET = 1885621
SUBCODE_BELOW_AMOUNT_SPENT = 1885650
# Graph's date_preset values and the (first, last) days they cover, from today.
DATE_PRESETS = (
    "today", "yesterday", "this_month", "last_month", "this_quarter", "maximum", "data_maximum",
    "last_3d", "last_7d", "last_14d", "last_28d", "last_30d", "last_90d", "last_week_mon_sun",
    "last_week_sun_sat", "last_quarter", "last_year", "this_week_mon_today", "this_week_sun_today",
    "this_year",
)  # fmt: skip

_VERSION_PATH = re.compile(r"^/(v\d+\.\d+)/(.*?)/?$")


class GraphError(Exception):
    """An error answer, raised anywhere in a handler and written by the dispatcher."""

    def __init__(
        self,
        http_status: int,
        code: int,
        message: str,
        *,
        error_type: str = "OAuthException",
        subcode: int | None = None,
        transient: bool = False,
        user_title: str = "",
        user_msg: str = "",
        error_data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.subcode = subcode
        self.transient = transient
        self.user_title = user_title
        self.user_msg = user_msg
        self.error_data = error_data
        self.headers = headers or {}

    def body(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "is_transient": self.transient,
            "fbtrace_id": fbtrace_id,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title:
            error["error_user_title"] = self.user_title
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        if self.error_data is not None:
            # Graph sends error_data as a JSON-encoded string; the SDK decodes either form.
            error["error_data"] = json.dumps(self.error_data)
        return {"error": error}


def _not_found(node: str, method: str = "get") -> GraphError:
    return GraphError(
        HTTPStatus.BAD_REQUEST,
        100,
        f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
        error_type="GraphMethodException",
        subcode=33,
    )


def _invalid_parameter(message: str, **kwargs: Any) -> GraphError:
    return GraphError(HTTPStatus.BAD_REQUEST, 100, message, **kwargs)


class MetaSandboxState:
    """What the emulator holds between requests. Tests read and change it; all access
    from request threads goes through ``lock``."""

    def __init__(self, data: MetaSandboxData, faults: Faults) -> None:
        self.data = data
        self.faults = faults
        self.lock = threading.RLock()
        self.access_token = credentials.META_ACCESS_TOKEN
        self.app_secret = credentials.META_APP_SECRET
        self.supported_versions = set(SUPPORTED_VERSIONS)
        # Usage the headers report, in percent of the (hidden) hourly budget; tests raise it
        # to see a client slow down, and set regain minutes to see it stop.
        self.usage_pct = 4
        self.regain_minutes = 0
        self.clock = time.time
        self.requests: deque[tuple[str, str]] = deque(maxlen=10_000)  # (method, path) — no query
        self.versions_seen: Counter[str] = Counter()
        self.received_events: Counter[tuple[str, str]] = Counter()  # (event_name, event_id) → times received
        self.stored_events: list[dict[str, Any]] = []
        self._first_received: dict[tuple[str, str, str], float] = {}

    # --- conveniences for tests and demos ------------------------------------------------

    @property
    def business_id(self) -> str:
        return self.data.business_id

    @property
    def pixel_id(self) -> str:
        return self.data.pixel_id

    def add_account(
        self, account_id: str, name: str, currency: str, timezone_name: str, *, campaigns: int = 3
    ) -> SandboxAccount:
        with self.lock:
            return self.data.add_account(account_id, name, currency, timezone_name, campaigns=campaigns)

    def campaign(self, campaign_id: str) -> SandboxCampaign:
        with self.lock:
            return self.data.campaigns[campaign_id]

    def event_count(self, event_name: str, event_id: str) -> int:
        """Stored copies of one event (1 after any number of duplicates within 48 h)."""
        with self.lock:
            return sum(1 for e in self.stored_events if e["event_name"] == event_name and e.get("event_id") == event_id)

    def request_count(self, path_contains: str = "") -> int:
        with self.lock:
            return sum(1 for _, path in self.requests if path_contains in path)

    # --- request handling ----------------------------------------------------------------

    def usage_headers(
        self, account_id: str | None, *, use_case: str = "ads_management", exhausted: bool = False
    ) -> dict[str, str]:
        pct = 100 if exhausted else self.usage_pct
        regain = max(1, math.ceil(self.faults.quota_retry_seconds / 60)) if exhausted else self.regain_minutes
        headers = {"X-App-Usage": json.dumps({"call_count": pct, "total_cputime": max(1, pct // 2), "total_time": pct})}
        owner = account_id or self.data.business_id
        headers["X-Business-Use-Case-Usage"] = json.dumps(
            {
                owner: [
                    {
                        "type": use_case,
                        "call_count": pct,
                        "total_cputime": max(1, pct // 2),
                        "total_time": pct,
                        "estimated_time_to_regain_access": regain,  # minutes
                        "ads_api_access_tier": "standard_access",
                    }
                ]
            }
        )
        if account_id:
            headers["X-Ad-Account-Usage"] = json.dumps(
                {"acc_id_util_pct": pct, "reset_time_duration": regain * 60, "ads_api_access_tier": "standard_access"}
            )
        return headers

    def check_token(self, params: dict[str, str], authorization: str) -> None:
        token = params.get("access_token", "")
        if not token and authorization.split(" ", 1)[0].lower() in ("bearer", "oauth"):
            token = authorization.split(" ", 1)[1].strip()
        if not token:
            raise GraphError(HTTPStatus.BAD_REQUEST, 104, "An access token is required to request this resource.")
        if not hmac.compare_digest(token, self.access_token):
            raise GraphError(
                HTTPStatus.BAD_REQUEST, 190, "Invalid OAuth access token - Cannot parse access token", subcode=467
            )
        proof = params.get("appsecret_proof")
        if proof is not None:
            expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof, expected):
                raise GraphError(
                    HTTPStatus.BAD_REQUEST,
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    error_type="GraphMethodException",
                )

    def account_of(self, node: str) -> SandboxAccount | None:
        """The ad account a node belongs to (for usage headers and quota codes)."""
        if node.startswith("act_"):
            return self.data.accounts.get(node[4:])
        owner = self.data.campaigns.get(node) or self.data.adsets.get(node)
        return self.data.accounts.get(owner.account_id) if owner else None

    def adset(self, adset_id: str) -> SandboxAdSet:
        with self.lock:
            return self.data.adsets[adset_id]

    def today(self, account: SandboxAccount) -> date:
        return _account_today(account, self.clock())


# --- paging ---------------------------------------------------------------------------------


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, _, value = raw.partition(":")
        if name != "offset":
            raise ValueError(cursor)
        return int(value)
    except ValueError:
        raise _invalid_parameter("Invalid cursor: the after parameter is not a cursor this edge issued") from None


def _page_size(params: dict[str, str]) -> int:
    try:
        return max(1, min(MAX_PAGE_SIZE, int(params.get("limit", DEFAULT_PAGE_SIZE))))
    except ValueError:
        raise _invalid_parameter("(#100) Param limit must be an integer") from None


def _paging(base_url: str, path: str, params: dict[str, str], start: int, end: int, more: bool) -> dict[str, Any]:
    """Graph's paging object. ``next`` only when more remain: the SDK stops when it is absent.
    (Unlike real Graph, the ``next`` URL here carries no access token.)"""
    paging: dict[str, Any] = {"cursors": {"before": _encode_cursor(start), "after": _encode_cursor(end)}}
    if more:
        query = {k: v for k, v in params.items() if k not in ("access_token", "appsecret_proof")}
        query["after"] = _encode_cursor(end)
        paging["next"] = f"{base_url}{path}?{urlencode(query)}"
    return paging


def _select(obj: dict[str, Any], params: dict[str, str], default_fields: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    """Only the requested fields (Graph returns ``id`` plus what ``fields`` names; unset fields
    are absent, not null)."""
    wanted = [f for f in params.get("fields", "").split(",") if f] or list(default_fields)
    return {k: obj[k] for k in ("id", *wanted) if k in obj and obj[k] is not None}


def _wanted_fields(params: dict[str, str], known: frozenset[str], node_type: str) -> list[str]:
    """The names in ``fields=``; one the node type does not have is refused, as Graph does."""
    wanted = [f.strip() for f in params.get("fields", "").split(",") if f.strip()]
    for name in wanted:
        if name not in known:
            raise _invalid_parameter(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")
    return wanted


def _select_known(obj: dict[str, Any], params: dict[str, str], known: frozenset[str], node_type: str) -> dict[str, Any]:
    wanted = _wanted_fields(params, known, node_type) or ["id"]
    return {k: obj[k] for k in ("id", *wanted) if k in obj and obj[k] is not None}


def _json_param(params: dict[str, str], name: str) -> Any:
    try:
        return json.loads(params[name])
    except (KeyError, ValueError):
        raise _invalid_parameter(f"(#100) Param {name} must be JSON") from None


# --- endpoints ------------------------------------------------------------------------------


def _account_node(account: SandboxAccount) -> dict[str, Any]:
    minimum = meta_min_daily_budget_micros(account.currency) // minor_unit_micros(account.currency)
    return {
        "min_daily_budget": minimum,
        "id": f"act_{account.account_id}",
        "account_id": account.account_id,
        "name": account.name,
        "currency": account.currency,
        "timezone_name": account.timezone_name,
        "account_status": 1,
        "business": {"id": account.business_id},
    }


def _budget_text(amount: int | None) -> str | None:
    return None if amount is None else str(amount)  # minor units, sent as strings


def _campaign_node(state: MetaSandboxState, campaign: SandboxCampaign) -> dict[str, Any]:
    account = state.data.accounts[campaign.account_id]
    node: dict[str, Any] = {
        "id": campaign.campaign_id,
        "account_id": campaign.account_id,
        "name": campaign.name,
        "status": campaign.status,
        "effective_status": campaign.status,
        "configured_status": campaign.status,
        "objective": campaign.objective,
        "buying_type": "AUCTION",
        "daily_budget": _budget_text(campaign.daily_budget),
        "lifetime_budget": _budget_text(campaign.lifetime_budget),
    }
    if campaign.lifetime_budget is not None:
        first, last = flight(state.today(account))
        spent = spent_minor(campaign, [], None, first, state.today(account))
        node["start_time"] = graph_time(first, account.timezone_name)
        node["stop_time"] = graph_time(last, account.timezone_name, end=True)
        node["budget_remaining"] = str(max(0, campaign.lifetime_budget - spent))
    elif campaign.daily_budget is not None:
        node["budget_remaining"] = str(campaign.daily_budget)  # Graph reports the day's budget
    return node


def _adset_effective_status(campaign: SandboxCampaign, adset: SandboxAdSet) -> str:
    if campaign.status == "PAUSED" and adset.status == "ACTIVE":
        return "CAMPAIGN_PAUSED"
    if campaign.status in ("ARCHIVED", "DELETED"):
        return campaign.status
    return adset.status


def _adset_node(state: MetaSandboxState, adset: SandboxAdSet) -> dict[str, Any]:
    campaign = state.data.campaigns[adset.campaign_id]
    account = state.data.accounts[adset.account_id]
    node: dict[str, Any] = {
        "id": adset.adset_id,
        "account_id": adset.account_id,
        "campaign_id": adset.campaign_id,
        "name": adset.name,
        "status": adset.status,
        "configured_status": adset.status,
        "effective_status": _adset_effective_status(campaign, adset),
        "daily_budget": _budget_text(adset.daily_budget),
        "lifetime_budget": _budget_text(adset.lifetime_budget),
    }
    today = state.today(account)
    if adset.lifetime_budget is not None:
        first, last = flight(today)
        siblings = state.data.adsets_of(campaign)
        spent = spent_minor(campaign, siblings, siblings.index(adset), first, today)
        node["start_time"] = graph_time(first, account.timezone_name)
        node["end_time"] = graph_time(last, account.timezone_name, end=True)
        node["budget_remaining"] = str(max(0, adset.lifetime_budget - spent))
    else:
        node["start_time"] = graph_time(flight(today)[0], account.timezone_name)
        if adset.daily_budget is not None:
            node["budget_remaining"] = str(adset.daily_budget)
    return node


def _account_today(account: SandboxAccount, now: float) -> date:
    return datetime.fromtimestamp(now, ZoneInfo(account.timezone_name)).date()


def _parse_day(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _invalid_parameter(f"(#100) time_range date {value!r} must be YYYY-MM-DD") from None


def _preset_range(preset: str, today: date, first_day: date) -> tuple[date, date]:
    """The days a date_preset covers (Graph's last_Nd are the N days before today)."""
    yesterday = today - timedelta(days=1)
    month_start = today.replace(day=1)
    last_month_end = month_start - timedelta(days=1)
    quarter_start = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    last_quarter_end = quarter_start - timedelta(days=1)
    monday = today - timedelta(days=today.weekday())
    sunday = today - timedelta(days=(today.weekday() + 1) % 7)
    if preset.startswith("last_") and preset.endswith("d") and preset[5:-1].isdigit():
        return today - timedelta(days=int(preset[5:-1])), yesterday
    ranges = {
        "today": (today, today),
        "yesterday": (yesterday, yesterday),
        "this_month": (month_start, today),
        "last_month": (last_month_end.replace(day=1), last_month_end),
        "this_quarter": (quarter_start, today),
        "last_quarter": (date(last_quarter_end.year, (last_quarter_end.month - 1) // 3 * 3 + 1, 1), last_quarter_end),
        "maximum": (first_day, today),
        "data_maximum": (first_day, today),
        "last_week_mon_sun": (monday - timedelta(days=7), monday - timedelta(days=1)),
        "last_week_sun_sat": (sunday - timedelta(days=7), sunday - timedelta(days=1)),
        "last_year": (date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
        "this_week_mon_today": (monday, today),
        "this_week_sun_today": (sunday, today),
        "this_year": (date(today.year, 1, 1), today),
    }
    return ranges[preset]


@dataclass(frozen=True)
class _InsightsRequest:
    """What one insights request covers: the objects (campaigns, or ad sets with their campaign),
    the days, and whether each day is its own row."""

    level: str  # account | campaign | adset
    objects: list[Any]  # SandboxCampaign, (SandboxCampaign, [ad sets], position), or the account
    since: date
    day_count: int
    daily: bool


def _insights_request(
    state: MetaSandboxState,
    account: SandboxAccount,
    params: dict[str, str],
    *,
    campaign: SandboxCampaign | None = None,
    adset: SandboxAdSet | None = None,
) -> _InsightsRequest:
    own_level = "adset" if adset is not None else ("campaign" if campaign is not None else "account")
    level = params.get("level", own_level)
    order = ("account", "campaign", "adset")
    if level not in ("account", "campaign", "adset", "ad"):
        raise _invalid_parameter(
            "(#100) level must be one of the following values: ad, adset, campaign, account",
        )
    if level == "ad":
        raise _invalid_parameter("The sandbox keeps no ads: ask level=adset, campaign or account")
    if order.index(level) < order.index(own_level):
        raise _invalid_parameter(f"(#100) level {level} is above the {own_level} this edge belongs to")
    increment = params.get("time_increment", "all_days")
    if increment not in ("1", "all_days"):
        raise _invalid_parameter("The sandbox serves insights with time_increment=1 or all_days only")
    today = _account_today(account, state.clock())
    first_day = today - timedelta(days=state.data.days - 1)  # insights exist for `days` days, today included
    if "time_range" in params:
        time_range = _json_param(params, "time_range")
        if not isinstance(time_range, dict) or "since" not in time_range or "until" not in time_range:
            raise _invalid_parameter("(#100) time_range must be an object with since and until")
        since, until = _parse_day(time_range["since"]), _parse_day(time_range["until"])
        if since > until:
            raise _invalid_parameter("(#100) time_range since must be on or before until")
    elif "date_preset" in params:
        preset = params["date_preset"]
        if preset not in DATE_PRESETS:
            raise _invalid_parameter(
                f"(#100) date_preset must be one of the following values: {', '.join(DATE_PRESETS)}"
            )
        since, until = _preset_range(preset, today, first_day)
    else:  # Graph's default date_preset is last_30d: the 30 days before today
        since, until = today - timedelta(days=30), today - timedelta(days=1)
    since, until = max(since, first_day), min(until, today)
    with state.lock:
        data = state.data
        campaigns = [campaign] if campaign is not None else [data.campaigns[c] for c in account.campaign_ids]
        if adset is not None:
            siblings = data.adsets_of(campaign)  # type: ignore[arg-type]
            objects: list[Any] = [(campaign, siblings, siblings.index(adset))]
        elif level == "adset":
            objects = []
            for c in campaigns:
                siblings = data.adsets_of(c)
                objects += [(c, siblings, position) for position in range(len(siblings))]
        elif level == "campaign":
            objects = list(campaigns)
        else:
            objects = [(account, campaigns)]
    return _InsightsRequest(level, objects, since, max(0, (until - since).days + 1), increment == "1")


def _object_counts(level: str, obj: Any, day: date) -> tuple[Any, dict[str, str]] | None:
    """(DayCounts, ids) of one object on one day, or None without delivery."""
    if level == "adset":
        campaign, siblings, position = obj
        parts = adset_day_counts(campaign, siblings, day)
        adset = siblings[position]
        ids = {
            "campaign_id": campaign.campaign_id,
            "campaign_name": campaign.name,
            "adset_id": adset.adset_id,
            "adset_name": adset.name,
        }
        return (parts[position], ids) if parts is not None else None
    if level == "campaign":
        counts = _campaign_day(obj.campaign_id, obj.status, obj.spend_basis, obj.overspends, day)
        return (counts, {"campaign_id": obj.campaign_id, "campaign_name": obj.name}) if counts else None
    account, campaigns = obj
    totals = [0] * 6
    delivered = False
    for c in campaigns:
        counts = _campaign_day(c.campaign_id, c.status, c.spend_basis, c.overspends, day)
        if counts is None:
            continue
        delivered = True
        for index, value in enumerate(
            (counts.impressions, counts.clicks, counts.spend_minor, counts.purchases, counts.leads,
             counts.purchase_value_minor)
        ):  # fmt: skip
            totals[index] += value
    if not delivered:
        return None
    return DayCounts(*totals), {"account_id": account.account_id}


def _insight_rows(
    request: _InsightsRequest, currency: str, start: int, end: int
) -> Iterator[tuple[int, dict[str, object]]]:
    """Rows from cell ``start`` on: daily cells walk (day x object), day-major; all_days cells
    are the objects, each summed over the days."""
    per_day = len(request.objects)
    last_day = request.since + timedelta(days=max(0, request.day_count - 1))
    for index in range(start, end):
        if request.daily:
            day_offset, position = divmod(index, per_day)
            day = request.since + timedelta(days=day_offset)
            found = _object_counts(request.level, request.objects[position], day)
            if found is not None:
                yield index, insight_row(found[0], currency, day, day, found[1])
            continue
        totals, ids = [0] * 6, None
        for offset in range(request.day_count):
            found = _object_counts(request.level, request.objects[index], request.since + timedelta(days=offset))
            if found is None:
                continue
            counts, ids = found
            for k, value in enumerate(
                (counts.impressions, counts.clicks, counts.spend_minor, counts.purchases, counts.leads,
                 counts.purchase_value_minor)
            ):  # fmt: skip
                totals[k] += value
        if ids is not None:
            yield index, insight_row(DayCounts(*totals), currency, request.since, last_day, ids)


class GraphHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    server: _GraphServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib logs the request line, query string (with the access token) included.
        return

    def do_GET(self) -> None:
        if urlsplit(self.path).path == INSPECT_EVENTS_PATH:
            # What the emulator stored, for whoever runs it (read-only, loopback).
            with self.server.state.lock:
                events = list(self.server.state.stored_events)
            self._send(HTTPStatus.OK, {"events": events}, secrets.token_urlsafe(12), {})
            return
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------------------------

    def _params(self) -> dict[str, str]:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        params = {k: v[-1] for k, v in query.items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8")
            if "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                params.update({k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()})
        return params

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        fbtrace_id = secrets.token_urlsafe(12)
        path = urlsplit(self.path).path
        account_id: str | None = None
        use_case = "ads_insights" if path.rstrip("/").endswith("/insights") else "ads_management"
        try:
            params = self._params()
            match = _VERSION_PATH.match(path)
            if not match:
                raise GraphError(HTTPStatus.BAD_REQUEST, 2500, "Unknown path components: " + path)
            version, rest = match.groups()
            with state.lock:
                state.requests.append((method, path))
                state.versions_seen[version] += 1
            logger.debug("graph sandbox %s %s", method, path)
            if version not in state.supported_versions:
                raise GraphError(
                    HTTPStatus.BAD_REQUEST,
                    2635,
                    f"You are calling a deprecated version of the Ads API ({version}). "
                    "Please update to the latest version.",
                )
            parts = rest.split("/") if rest else []
            node = parts[0] if parts else ""
            with state.lock:
                account = state.account_of(node)
            account_id = account.account_id if account else None
            self._apply_faults(state, parts, account_id)
            status, body = meta_oauth.route(self, state, method, parts, params)  # logins, then _route
            if body is None:  # timeout_after_accept: the work is done, the answer never comes
                self.close_connection = True
                return
            self._send(status, body, fbtrace_id, state.usage_headers(account_id, use_case=use_case))
        except GraphError as error:
            exhausted = error.code in (4, 17, 613, 80000, 80004)
            headers = {**state.usage_headers(account_id, use_case=use_case, exhausted=exhausted), **error.headers}
            self._send(error.http_status, error.body(fbtrace_id), fbtrace_id, headers)

    def _apply_faults(self, state: MetaSandboxState, parts: list[str], account_id: str | None) -> None:
        fault = state.faults.pick()  # also sleeps for the configured latency
        if fault == "auth":
            raise GraphError(
                HTTPStatus.BAD_REQUEST,
                190,
                "Error validating access token: Session has expired on Thursday, 01-Jan-26 00:00:00 PST.",
                subcode=463,
            )
        if fault == "quota":
            if len(parts) > 1 and parts[1] == "insights":
                raise GraphError(
                    HTTPStatus.BAD_REQUEST,
                    80000,
                    "There have been too many calls from this ad-account. Wait a bit and try again.",
                    subcode=2446079,
                    transient=True,
                )
            if account_id:
                raise GraphError(
                    HTTPStatus.BAD_REQUEST,
                    80004,
                    "There have been too many calls to this ad-account. Wait a bit and try again.",
                    subcode=2446079,
                    transient=True,
                )
            raise GraphError(HTTPStatus.BAD_REQUEST, 17, "User request limit reached", subcode=2446079, transient=True)
        if fault == "unavailable":
            raise GraphError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                2,
                "An unexpected error has occurred. Please retry your request later.",
                transient=True,
            )

    def _route(
        self, state: MetaSandboxState, method: str, parts: list[str], params: dict[str, str]
    ) -> tuple[int, dict[str, Any] | None]:
        data = state.data
        node = parts[0] if parts else ""
        edge = parts[1] if len(parts) > 1 else ""
        if len(parts) > 2 or not node:
            raise _not_found("/".join(parts), method.lower())
        if node == "me" and not edge and method == "GET":
            return HTTPStatus.OK, _select(
                {"id": SANDBOX_USER_ID, "name": "IBVI Sandbox System User"}, params, ("id", "name")
            )
        if node == data.business_id and method == "GET":
            if not edge:
                return HTTPStatus.OK, _select(
                    {"id": data.business_id, "name": data.business_name}, params, ("id", "name")
                )
            if edge == "owned_ad_accounts":
                with state.lock:
                    nodes = [_account_node(a) for a in data.accounts.values() if a.business_id == data.business_id]
                return HTTPStatus.OK, self._list_page(nodes, params, ACCOUNT_FIELDS, "AdAccount")
        if node.startswith("act_") and node[4:] in data.accounts and method == "GET":
            account = data.accounts[node[4:]]
            if not edge:
                return HTTPStatus.OK, _select_known(_account_node(account), params, ACCOUNT_FIELDS, "AdAccount")
            if edge == "campaigns":
                return HTTPStatus.OK, self._campaigns(state, account, params)
            if edge == "adsets":
                with state.lock:
                    adsets = [a for c in account.campaign_ids for a in data.adsets_of(data.campaigns[c])]
                return HTTPStatus.OK, self._adsets(state, adsets, params)
            if edge == "insights":
                return HTTPStatus.OK, self._insights(state, account, params)
            if edge == "adspixels":
                # The business's pixel, shared with each of its ad accounts.
                pixels = [{"id": data.pixel_id, "name": data.pixel_name}]
                return HTTPStatus.OK, self._list_page(pixels, params, PIXEL_FIELDS, "AdsPixel")
        if node in data.campaigns:
            campaign = data.campaigns[node]
            account = data.accounts[campaign.account_id]
            if method == "GET" and not edge:
                with state.lock:
                    return HTTPStatus.OK, _select_known(
                        _campaign_node(state, campaign), params, CAMPAIGN_FIELDS, "Campaign"
                    )
            if method == "GET" and edge == "adsets":
                with state.lock:
                    adsets = data.adsets_of(campaign)
                return HTTPStatus.OK, self._adsets(state, adsets, params)
            if method == "GET" and edge == "insights":
                return HTTPStatus.OK, self._insights(state, account, params, campaign=campaign)
            if method == "POST" and not edge:
                self._update(state, campaign, None, params)
                if state.faults.roll(state.faults.timeout_after_accept):
                    return HTTPStatus.OK, None
                return HTTPStatus.OK, {"success": True}
        if node in data.adsets:
            adset = data.adsets[node]
            campaign = data.campaigns[adset.campaign_id]
            account = data.accounts[adset.account_id]
            if method == "GET" and not edge:
                with state.lock:
                    return HTTPStatus.OK, _select_known(_adset_node(state, adset), params, ADSET_FIELDS, "AdSet")
            if method == "GET" and edge == "insights":
                return HTTPStatus.OK, self._insights(state, account, params, campaign=campaign, adset=adset)
            if method == "POST" and not edge:
                self._update(state, campaign, adset, params)
                if state.faults.roll(state.faults.timeout_after_accept):
                    return HTTPStatus.OK, None
                return HTTPStatus.OK, {"success": True}
        if node == data.pixel_id and edge == "events" and method == "POST":
            answer = self._events(state, params)
            if state.faults.roll(state.faults.timeout_after_accept):
                return HTTPStatus.OK, None
            return HTTPStatus.OK, answer
        raise _not_found(node, method.lower())

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host', '127.0.0.1')}"

    def _list_page(
        self,
        items: list[dict[str, Any]],
        params: dict[str, str],
        known: frozenset[str] | None = None,
        node_type: str = "",
    ) -> dict[str, Any]:
        if known is not None:
            _wanted_fields(params, known, node_type)  # refuse an unknown field even on an empty page
        start = _decode_cursor(params["after"]) if params.get("after") else 0
        end = min(len(items), start + _page_size(params))
        body: dict[str, Any] = {
            "data": [_select(item, params) for item in items[start:end]],
            "paging": _paging(self._base_url(), urlsplit(self.path).path, params, start, end, end < len(items)),
        }
        if params.get("summary") in ("true", "1"):
            body["summary"] = {"total_count": len(items)}
        return body

    def _campaigns(self, state: MetaSandboxState, account: SandboxAccount, params: dict[str, str]) -> dict[str, Any]:
        statuses = (
            set(_json_param(params, "effective_status")) if "effective_status" in params else DEFAULT_CAMPAIGN_STATUSES
        )
        with state.lock:
            nodes = [
                _campaign_node(state, state.data.campaigns[c])
                for c in account.campaign_ids
                if state.data.campaigns[c].status in statuses
            ]
        return self._list_page(nodes, params, CAMPAIGN_FIELDS, "Campaign")

    def _adsets(self, state: MetaSandboxState, adsets: list[SandboxAdSet], params: dict[str, str]) -> dict[str, Any]:
        statuses = (
            set(_json_param(params, "effective_status")) if "effective_status" in params else DEFAULT_ADSET_STATUSES
        )
        with state.lock:
            nodes = [_adset_node(state, a) for a in adsets]
        nodes = [n for n in nodes if n["effective_status"] in statuses]
        return self._list_page(nodes, params, ADSET_FIELDS, "AdSet")

    def _insights(
        self,
        state: MetaSandboxState,
        account: SandboxAccount,
        params: dict[str, str],
        *,
        campaign: SandboxCampaign | None = None,
        adset: SandboxAdSet | None = None,
    ) -> dict[str, Any]:
        wanted = set(_wanted_fields(params, INSIGHT_FIELDS, "AdsInsights")) | {"date_start", "date_stop"}
        request = _insights_request(state, account, params, campaign=campaign, adset=adset)
        total = len(request.objects) * request.day_count if request.daily else len(request.objects)
        if request.day_count == 0:
            total = 0
        start = _decode_cursor(params["after"]) if params.get("after") else 0
        limit = _page_size(params)
        rows: list[dict[str, object]] = []
        end = total
        # Walk the cells from the cursor; cells without delivery yield no row.
        for index, row in _insight_rows(request, account.currency, start, total):
            rows.append({k: v for k, v in row.items() if k in wanted})
            if len(rows) == limit:
                end = index + 1
                break
        return {
            "data": rows,
            "paging": _paging(self._base_url(), urlsplit(self.path).path, params, start, end, end < total),
        }

    def _update(
        self, state: MetaSandboxState, campaign: SandboxCampaign, adset: SandboxAdSet | None, params: dict[str, str]
    ) -> None:
        """POST <campaign|adset>: every check first, then (unless validate_only) the change."""
        allowed = ADSET_UPDATE_PARAMS if adset is not None else CAMPAIGN_UPDATE_PARAMS
        kind = "ad set" if adset is not None else "campaign"
        for name in params:
            if name not in allowed and name not in _CREDENTIAL_PARAMS:
                raise _invalid_parameter(
                    "Invalid parameter",
                    user_title="Unknown Parameter",
                    user_msg=f"{name} is not a parameter a {kind} update takes.",
                    error_data={"blame_field_specs": [[name]]},
                )
        options = _json_param(params, "execution_options") if "execution_options" in params else []
        if not isinstance(options, list) or any(o not in EXECUTION_OPTIONS for o in options):
            raise _invalid_parameter(
                f"(#100) execution_options must be a list of: {', '.join(sorted(EXECUTION_OPTIONS))}"
            )
        account = state.data.accounts[campaign.account_id]
        with state.lock:
            target: Any = adset if adset is not None else campaign
            changes: dict[str, Any] = {}
            if "status" in params:
                status = params["status"]
                if status not in STATUSES:
                    raise _invalid_parameter(
                        f"(#100) status must be one of the following values: {', '.join(STATUSES)}"
                    )
                if target.status == "DELETED" and status != "DELETED":
                    raise _invalid_parameter(
                        "Invalid parameter",
                        user_title="Deleted Object",
                        user_msg=f"This {kind} is deleted; its status cannot change.",
                    )
                if target.status == "ARCHIVED" and status not in ("ARCHIVED", "DELETED"):
                    raise _invalid_parameter(
                        "Invalid parameter",
                        user_title="Archived Object",
                        user_msg=f"This {kind} is archived; it can only be deleted.",
                    )
                changes["status"] = status
            budgets = [name for name in ("daily_budget", "lifetime_budget") if name in params]
            if len(budgets) > 1:
                raise _invalid_parameter(
                    "Invalid parameter",
                    user_title="Two Budgets",
                    user_msg=f"A {kind} has a daily or a lifetime budget, not both.",
                )
            if budgets:
                changes[budgets[0]] = self._check_budget(
                    state, account, campaign, adset, budgets[0], params[budgets[0]]
                )
            if "validate_only" in options:
                return  # checked; nothing changes
            for name, value in changes.items():
                setattr(target, name, value)

    def _check_budget(
        self,
        state: MetaSandboxState,
        account: SandboxAccount,
        campaign: SandboxCampaign,
        adset: SandboxAdSet | None,
        name: str,
        raw: str,
    ) -> int:
        """The budget in minor units, or Meta's refusal."""
        if not raw.isdigit():
            raise _invalid_parameter(
                "Invalid parameter",
                user_title="Invalid Budget",
                user_msg="The budget must be a positive whole number in the account currency's minor unit.",
            )
        amount = int(raw)
        target: Any = adset if adset is not None else campaign
        if adset is None and campaign.budget_on_ad_sets:
            raise _invalid_parameter(
                "Invalid parameter",
                user_title="Campaign Budget Not Enabled",
                user_msg="This campaign's budget is set on its ad sets; change the ad set budgets instead.",
            )
        if adset is not None and not campaign.budget_on_ad_sets:
            raise _invalid_parameter(
                "Invalid parameter",
                subcode=SUBCODE_CAMPAIGN_HOLDS_BUDGET,
                user_title="Campaign Budget Set",
                user_msg="This ad set's campaign holds the budget (campaign budget); change the campaign's "
                "budget instead.",
            )
        other = "lifetime_budget" if name == "daily_budget" else "daily_budget"
        if getattr(target, other) is not None:
            has = "a lifetime" if other == "lifetime_budget" else "a daily"
            raise _invalid_parameter(
                "Invalid parameter",
                user_title="Cannot Switch Budget Type",
                user_msg=f"This {'ad set' if adset else 'campaign'} has {has} budget; "
                f"a {'daily' if name == 'daily_budget' else 'lifetime'} budget cannot be set on it.",
            )
        currency = account.currency
        minimum = meta_min_daily_budget_micros(currency) // minor_unit_micros(currency)
        today = state.today(account)
        if name == "lifetime_budget":
            first, last = flight(today)
            siblings = state.data.adsets_of(campaign)
            position = siblings.index(adset) if adset is not None else None
            spent = spent_minor(campaign, siblings, position, first, today)
            if amount < spent:
                raise _invalid_parameter(
                    "Invalid parameter",
                    subcode=SUBCODE_BELOW_AMOUNT_SPENT,
                    user_title="Lifetime Budget Below Amount Spent",
                    user_msg=f"The lifetime budget can't be less than what was already spent: "
                    f"{format_minor(spent, currency)} {currency}.",
                )
            minimum *= (last - first).days + 1
        if amount < minimum:
            raise _invalid_parameter(
                "Invalid parameter",
                subcode=SUBCODE_BUDGET_TOO_LOW,
                user_title="Your Budget Is Too Low",
                user_msg=f"The minimum {'daily' if name == 'daily_budget' else 'lifetime'} budget for this "
                f"{'ad set' if adset else 'campaign'} is {format_minor(minimum, currency)} {currency}.",
            )
        return amount

    def _events(self, state: MetaSandboxState, params: dict[str, str]) -> dict[str, Any]:
        raw_events = _json_param(params, "data")
        if not isinstance(raw_events, list) or not raw_events:
            raise _invalid_parameter("(#100) The parameter data is required")
        if len(raw_events) > MAX_EVENTS_PER_REQUEST:
            raise _invalid_parameter(f"(#100) data must be an array with at most {MAX_EVENTS_PER_REQUEST} elements")
        # The SDK sends each event as a JSON string inside the JSON array.
        events = [json.loads(e) if isinstance(e, str) else e for e in raw_events]
        now = state.clock()
        # Validate everything first: one bad event refuses the whole request, nothing is stored.
        for index, event in enumerate(events):
            self._validate_event(index, event, now)
        with state.lock:
            for event in events:
                name, event_id = event["event_name"], str(event.get("event_id", ""))
                state.received_events[(name, event_id)] += 1
                key = (state.data.pixel_id, name, event_id)
                first = state._first_received.get(key)
                if event_id and first is not None and now - first < DEDUPE_WINDOW_SECONDS:
                    continue  # a duplicate is received, not stored again
                if event_id:
                    state._first_received[key] = now
                state.stored_events.append(event)
        return {"events_received": len(events), "messages": [], "fbtrace_id": secrets.token_urlsafe(12)}

    @staticmethod
    def _validate_event(index: int, event: Any, now: float) -> None:
        def refuse(subcode: int | None, title: str, msg: str) -> GraphError:
            return _invalid_parameter(
                "Invalid parameter", subcode=subcode, user_title=title, user_msg=msg, error_data={"event_index": index}
            )

        if not isinstance(event, dict) or not event.get("event_name"):
            raise refuse(None, "Missing Event Name", f"Event {index} has no event_name.")
        if not event.get("action_source"):
            raise refuse(None, "Missing Action Source", f"Event {index} has no action_source.")
        if not event.get("user_data"):
            raise refuse(None, "Missing User Data", f"Event {index} has no user_data.")
        try:
            event_time = int(event["event_time"])
        except (KeyError, TypeError, ValueError):
            raise refuse(None, "Invalid Event Time", f"Event {index} has no valid event_time.") from None
        if now - event_time > EVENT_MAX_AGE_SECONDS:
            raise refuse(
                2804003,
                "Event Timestamp Too Old",
                "The timestamp for this event is too far in the past. Events need to be sent from your server "
                "within 7 days of when they occurred.",
            )
        if event_time - now > EVENT_FUTURE_TOLERANCE_SECONDS:
            raise refuse(2804004, "Event Timestamp In Future", "The timestamp for this event is in the future.")

    def _send(self, status: int, body: dict[str, Any], fbtrace_id: str, headers: dict[str, str]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-fb-trace-id", fbtrace_id)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _GraphServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: MetaSandboxState) -> None:
        super().__init__(address, GraphHandler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut kept-alive connections too: a stopped sandbox must look unreachable."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


@dataclass
class MetaSandbox:
    """A running emulator. ``url`` is what FacebookSession.GRAPH (MetaConfig.graph_url) points at."""

    host: str
    port: int
    state: MetaSandboxState
    _server: _GraphServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)


def start(
    *, host: str = "127.0.0.1", port: int = 0, data: MetaSandboxData | None = None, faults: Faults | None = None
) -> MetaSandbox:
    """Serve the Graph API emulator in a background thread; ``port=0`` picks a free port."""
    state = MetaSandboxState(data or MetaSandboxData.demo(), faults or Faults())
    server = _GraphServer((host, port), state)
    # A short poll interval keeps stop() quick (serve_forever checks for shutdown that often).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="meta-graph-sandbox", daemon=True
    )
    thread.start()
    return MetaSandbox(host=host, port=server.server_address[1], state=state, _server=server, _thread=thread)
