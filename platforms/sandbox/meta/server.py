"""A Graph API emulator over plain HTTP, serving exactly what facebook-business sends.

The SDK builds ``<GRAPH>/<version>/<node>/<edge>`` URLs, sends the access token (and
appsecret_proof) as query parameters on every request, GET parameters in the query string,
POST parameters as a form body, list/dict parameters JSON-encoded, and pages by resending
the request with ``after`` taken from ``paging.cursors.after`` while ``paging.next`` exists.

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

from platforms.registry import SANDBOX_META_ACCESS_TOKEN, SANDBOX_META_APP_SECRET
from platforms.sandbox.faults import Faults
from platforms.sandbox.meta import oauth as meta_oauth
from platforms.sandbox.meta.data import MetaSandboxData, SandboxAccount, SandboxCampaign, daily_insight

logger = logging.getLogger(__name__)

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
        self.access_token = SANDBOX_META_ACCESS_TOKEN
        self.app_secret = SANDBOX_META_APP_SECRET
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
        campaign = self.data.campaigns.get(node)
        return self.data.accounts.get(campaign.account_id) if campaign else None


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


def _json_param(params: dict[str, str], name: str) -> Any:
    try:
        return json.loads(params[name])
    except (KeyError, ValueError):
        raise _invalid_parameter(f"(#100) Param {name} must be JSON") from None


# --- endpoints ------------------------------------------------------------------------------


def _account_node(account: SandboxAccount) -> dict[str, Any]:
    return {
        "id": f"act_{account.account_id}",
        "account_id": account.account_id,
        "name": account.name,
        "currency": account.currency,
        "timezone_name": account.timezone_name,
        "account_status": 1,
        "business": {"id": account.business_id},
    }


def _campaign_node(campaign: SandboxCampaign) -> dict[str, Any]:
    return {
        "id": campaign.campaign_id,
        "account_id": campaign.account_id,
        "name": campaign.name,
        "status": campaign.status,
        "effective_status": campaign.status,
        "configured_status": campaign.status,
        "objective": campaign.objective,
        # Budgets are integers in the currency's minor unit, sent as strings.
        "daily_budget": None if campaign.daily_budget is None else str(campaign.daily_budget),
        "lifetime_budget": None if campaign.lifetime_budget is None else str(campaign.lifetime_budget),
    }


def _account_today(account: SandboxAccount, now: float) -> date:
    return datetime.fromtimestamp(now, ZoneInfo(account.timezone_name)).date()


def _parse_day(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _invalid_parameter(f"(#100) time_range date {value!r} must be YYYY-MM-DD") from None


def _insights_cells(
    state: MetaSandboxState, account: SandboxAccount, params: dict[str, str]
) -> tuple[list[SandboxCampaign], date, int]:
    """The (day x campaign) grid a request covers: campaigns, first day, number of days."""
    if params.get("level", "account") != "campaign":
        raise _invalid_parameter("The sandbox serves insights at level=campaign only")
    if params.get("time_increment") not in ("1", None):
        raise _invalid_parameter("The sandbox serves insights with time_increment=1 only")
    today = _account_today(account, state.clock())
    if "time_range" in params:
        time_range = _json_param(params, "time_range")
        if not isinstance(time_range, dict) or "since" not in time_range or "until" not in time_range:
            raise _invalid_parameter("(#100) time_range must be an object with since and until")
        since, until = _parse_day(time_range["since"]), _parse_day(time_range["until"])
        if since > until:
            raise _invalid_parameter("(#100) time_range since must be on or before until")
    else:  # Graph's default date_preset is last_30d: the 30 days before today
        since, until = today - timedelta(days=30), today - timedelta(days=1)
    # Data exists for the last ``days`` days up to today, in the account's own time zone.
    since = max(since, today - timedelta(days=state.data.days - 1))
    until = min(until, today)
    with state.lock:
        campaigns = [state.data.campaigns[c] for c in account.campaign_ids]
    return campaigns, since, max(0, (until - since).days + 1)


def _insight_rows(
    campaigns: list[SandboxCampaign], currency: str, since: date, start: int, end: int
) -> Iterator[tuple[int, dict[str, object]]]:
    per_day = len(campaigns)
    for index in range(start, end):
        day_offset, campaign_index = divmod(index, per_day)
        row = daily_insight(campaigns[campaign_index], currency, since + timedelta(days=day_offset))
        if row is not None:
            yield index, row


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
                return HTTPStatus.OK, self._list_page(nodes, params)
        if node.startswith("act_") and node[4:] in data.accounts and method == "GET":
            account = data.accounts[node[4:]]
            if not edge:
                return HTTPStatus.OK, _select(_account_node(account), params)
            if edge == "campaigns":
                return HTTPStatus.OK, self._campaigns(state, account, params)
            if edge == "insights":
                return HTTPStatus.OK, self._insights(state, account, params)
        if node in data.campaigns and not edge:
            if method == "GET":
                with state.lock:
                    return HTTPStatus.OK, _select(_campaign_node(data.campaigns[node]), params)
            if method == "POST":
                self._update_campaign(state, data.campaigns[node], params)
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

    def _list_page(self, items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
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
                _campaign_node(state.data.campaigns[c])
                for c in account.campaign_ids
                if state.data.campaigns[c].status in statuses
            ]
        return self._list_page(nodes, params)

    def _insights(self, state: MetaSandboxState, account: SandboxAccount, params: dict[str, str]) -> dict[str, Any]:
        campaigns, since, day_count = _insights_cells(state, account, params)
        total = len(campaigns) * day_count
        start = _decode_cursor(params["after"]) if params.get("after") else 0
        limit = _page_size(params)
        wanted = {f for f in params.get("fields", "").split(",") if f} | {"date_start", "date_stop"}
        rows: list[dict[str, object]] = []
        end = total
        # Walk the (day x campaign) grid from the cursor; cells without delivery yield no row.
        for index, row in _insight_rows(campaigns, account.currency, since, start, total):
            rows.append({k: v for k, v in row.items() if k in wanted})
            if len(rows) == limit:
                end = index + 1
                break
        return {
            "data": rows,
            "paging": _paging(self._base_url(), urlsplit(self.path).path, params, start, end, end < total),
        }

    def _update_campaign(self, state: MetaSandboxState, campaign: SandboxCampaign, params: dict[str, str]) -> None:
        if "daily_budget" not in params:
            return
        raw = params["daily_budget"]
        if not raw.isdigit() or int(raw) <= 0:
            raise _invalid_parameter(
                "Invalid parameter",
                user_title="Invalid Budget",
                user_msg="The daily budget must be a positive whole number in the account currency's minor unit.",
            )
        with state.lock:
            if campaign.budget_on_ad_sets:
                raise _invalid_parameter(
                    "Invalid parameter",
                    user_title="Campaign Budget Not Enabled",
                    user_msg="This campaign's budget is set on its ad sets; change the ad set budgets instead.",
                )
            if campaign.lifetime_budget is not None:
                raise _invalid_parameter(
                    "Invalid parameter",
                    user_title="Cannot Switch Budget Type",
                    user_msg="This campaign has a lifetime budget; a daily budget cannot be set on it.",
                )
            campaign.daily_budget = int(raw)

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
