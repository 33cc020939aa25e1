"""What the Google Ads emulator remembers for its lifetime: changed budgets and statuses,
uploaded conversions, issued access tokens and a bounded log of calls. One lock guards all of it.
Only what changed is stored (a dict entry per changed object), so memory stays flat however
large the generated data is."""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from platforms.sandbox.faults import Faults
from platforms.sandbox.google.data import GoogleSandboxData, SandboxAdGroup, SandboxBudget, SandboxCampaign

_CALL_LOG_SIZE = 10_000  # enough for any test; bounded so a long demo run stays flat


@dataclass(frozen=True)
class StoredConversion:
    customer_id: int
    conversion_action_id: int
    gclid: str
    gbraid: str
    wbraid: str
    conversion_date_time: str  # as sent
    conversion_value: float | None
    currency_code: str
    order_id: str
    hashed_emails: tuple[str, ...]
    hashed_phone_numbers: tuple[str, ...]
    ad_user_data_consent: str
    ad_personalization_consent: str

    @property
    def click_id(self) -> str:
        return self.gclid or self.gbraid or self.wbraid


@dataclass(frozen=True)
class CallRecord:
    version: str
    service: str
    method: str
    customer_id: str
    login_customer_id: str
    developer_token_sent: bool
    status: str = "OK"  # the gRPC status code name the call ended with
    messages: int = 0  # response messages sent (Search pages are one call each; stream batches)


def conversion_key(customer_id: int, action_id: int, click_id: str, moment: datetime) -> tuple[int, int, str, float]:
    """Google treats click + action + conversion time as one conversion; the instant, not the
    text, is compared so "+00:00" and "+01:00" spellings of the same moment collide."""
    return customer_id, action_id, click_id, moment.timestamp()


class GoogleSandboxState:
    def __init__(self, data: GoogleSandboxData, faults: Faults) -> None:
        self.data = data
        self.faults = faults
        self.lock = threading.RLock()
        self._budget_amounts: dict[int, int] = {}
        self._budget_totals: dict[int, int] = {}
        self._campaign_statuses: dict[int, str] = {}
        self._ad_group_statuses: dict[int, str] = {}
        self._conversions: list[StoredConversion] = []
        self._conversion_keys: set[tuple[int, int, str, float]] = set()
        self._order_ids: set[tuple[int, int, str]] = set()
        self._tokens: dict[str, float] = {}
        self._calls: deque[CallRecord] = deque(maxlen=_CALL_LOG_SIZE)

    # --- Budgets -------------------------------------------------------------------------------

    def budget_amount(self, budget: SandboxBudget) -> int | None:
        with self.lock:
            return self._budget_amounts.get(budget.id, budget.amount_micros)

    def set_budget_amount(self, budget_id: int, amount_micros: int) -> None:
        with self.lock:
            self._budget_amounts[budget_id] = amount_micros

    def budget_total(self, budget: SandboxBudget) -> int | None:
        with self.lock:
            return self._budget_totals.get(budget.id, budget.total_amount_micros)

    def set_budget_total(self, budget_id: int, total_amount_micros: int) -> None:
        with self.lock:
            self._budget_totals[budget_id] = total_amount_micros

    # --- Statuses ------------------------------------------------------------------------------

    def campaign_status(self, campaign: SandboxCampaign) -> str:
        with self.lock:
            return self._campaign_statuses.get(campaign.id, campaign.status)

    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        with self.lock:
            self._campaign_statuses[campaign_id] = status

    def ad_group_status(self, ad_group: SandboxAdGroup) -> str:
        with self.lock:
            return self._ad_group_statuses.get(ad_group.id, ad_group.status)

    def set_ad_group_status(self, ad_group_id: int, status: str) -> None:
        with self.lock:
            self._ad_group_statuses[ad_group_id] = status

    # --- Conversions ---------------------------------------------------------------------------

    @property
    def conversions(self) -> list[StoredConversion]:
        """A copy of every accepted conversion, each stored exactly once."""
        with self.lock:
            return list(self._conversions)

    @property
    def conversion_count(self) -> int:
        with self.lock:
            return len(self._conversions)

    def conversion_action_ids(self, customer_id: int | str) -> list[str]:
        """The conversion actions of a customer, as the ids the conversions app seeds."""
        return [str(a.id) for a in self.data.conversion_actions if a.customer_id == int(customer_id)]

    def has_conversion(self, key: tuple[int, int, str, float]) -> bool:
        return key in self._conversion_keys

    def has_order_id(self, customer_id: int, action_id: int, order_id: str) -> bool:
        return (customer_id, action_id, order_id) in self._order_ids

    def store_conversion(self, conversion: StoredConversion, key: tuple[int, int, str, float]) -> None:
        """Callers hold ``lock`` across the duplicate check and this store."""
        self._conversions.append(conversion)
        self._conversion_keys.add(key)
        if conversion.order_id:
            self._order_ids.add((conversion.customer_id, conversion.conversion_action_id, conversion.order_id))

    # --- OAuth ---------------------------------------------------------------------------------

    def issue_token(self, lifetime_seconds: int) -> str:
        token = "ya29.sandbox-" + secrets.token_urlsafe(24)
        with self.lock:
            now = time.monotonic()
            # Forget expired tokens so a long-running demo does not grow without bound.
            for old in [t for t, expiry in self._tokens.items() if expiry < now]:
                del self._tokens[old]
            self._tokens[token] = now + lifetime_seconds
        return token

    def token_status(self, token: str) -> str:
        """ "valid", "expired" or "unknown"."""
        with self.lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if expiry >= time.monotonic() else "expired"

    def revoke_tokens(self) -> None:
        """Tests: every issued access token stops working, as after a password change."""
        with self.lock:
            self._tokens.clear()

    # --- Call log ------------------------------------------------------------------------------

    def record_call(self, record: CallRecord) -> None:
        with self.lock:
            self._calls.append(record)

    @property
    def calls(self) -> list[CallRecord]:
        with self.lock:
            return list(self._calls)

    @property
    def versions_seen(self) -> set[str]:
        with self.lock:
            return {c.version for c in self._calls}

    def reset(self) -> None:
        """Back to the demo data as generated: budgets, statuses, conversions, call log and faults."""
        with self.lock:
            self._budget_amounts.clear()
            self._budget_totals.clear()
            self._campaign_statuses.clear()
            self._ad_group_statuses.clear()
            self._conversions.clear()
            self._conversion_keys.clear()
            self._order_ids.clear()
            self._calls.clear()
        self.faults.reset()
