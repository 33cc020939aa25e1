"""Runs a parsed GAQL query against the sandbox data and fills GoogleAdsRow messages.

Rows are produced lazily, one at a time, straight into the response message being built, so a
10,000-campaign x 90-day stream never holds more than one batch. Only the selected fields are
set (plus each touched resource's resource_name, as the real API does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from typing import Any

from platforms.sandbox.google.data import DailyMetrics, SandboxBudget, SandboxCampaign, SandboxCustomer, daily_metrics
from platforms.sandbox.google.gaql import Condition, GaqlError, Literal, Query
from platforms.sandbox.google.state import GoogleSandboxState


class RowContext:
    """One result row before it is written: the entities it is about and, maybe, a day."""

    __slots__ = ("_metrics", "budget", "campaign", "client", "customer", "date_range", "day", "level", "state")

    def __init__(
        self,
        state: GoogleSandboxState,
        customer: SandboxCustomer,
        *,
        campaign: SandboxCampaign | None = None,
        budget: SandboxBudget | None = None,
        client: SandboxCustomer | None = None,
        level: int = 0,
        day: date | None = None,
        date_range: tuple[date, date] | None = None,
    ) -> None:
        self.state = state
        self.customer = customer
        self.campaign = campaign
        self.budget = budget if budget is not None else (campaign.budget if campaign else None)
        self.client = client
        self.level = level
        self.day = day
        self.date_range = date_range
        self._metrics: DailyMetrics | None = None

    @property
    def metrics(self) -> DailyMetrics:
        if self._metrics is None:
            self._metrics = self._compute_metrics()
        return self._metrics

    def _compute_metrics(self) -> DailyMetrics:
        if self.campaign is None:
            return DailyMetrics(0, 0, 0, 0.0, 0.0)
        if self.day is not None:
            return daily_metrics(self.campaign.id, self.day)
        # No date segment: the metrics of the whole range, summed, as the API aggregates them.
        assert self.date_range is not None
        first, last = self.date_range
        totals = [0, 0, 0, 0.0, 0.0]
        day = first
        while day <= last:
            m = daily_metrics(self.campaign.id, day)
            totals[0] += m.impressions
            totals[1] += m.clicks
            totals[2] += m.cost_micros
            totals[3] += m.conversions
            totals[4] += m.conversions_value
            day += timedelta(days=1)
        return DailyMetrics(totals[0], totals[1], totals[2], round(totals[3], 2), round(totals[4], 2))


Getter = Callable[[RowContext], Any]


def _campaign_resource(c: RowContext) -> str:
    return f"customers/{c.customer.id}/campaigns/{c.campaign.id}"  # type: ignore[union-attr]


def _budget_resource(c: RowContext) -> str:
    return f"customers/{c.customer.id}/campaignBudgets/{c.budget.id}"  # type: ignore[union-attr]


def _client_of(c: RowContext) -> SandboxCustomer:
    return c.client if c.client is not None else c.customer


# Natural values: ints, strings, bools, enum *names*; converted to wire values when set.
_GETTERS: dict[str, Getter] = {
    "campaign.resource_name": _campaign_resource,
    "campaign.id": lambda c: c.campaign.id,
    "campaign.name": lambda c: c.campaign.name,
    "campaign.status": lambda c: c.campaign.status,
    "campaign.campaign_budget": _budget_resource,
    "campaign_budget.resource_name": _budget_resource,
    "campaign_budget.id": lambda c: c.budget.id,
    "campaign_budget.name": lambda c: c.budget.name,
    "campaign_budget.amount_micros": lambda c: c.state.budget_amount(c.budget),
    "campaign_budget.total_amount_micros": lambda c: None,  # daily budgets only: never set
    "campaign_budget.explicitly_shared": lambda c: c.budget.explicitly_shared,
    "campaign_budget.reference_count": lambda c: c.budget.reference_count,
    "campaign_budget.period": lambda c: "DAILY",
    "campaign_budget.status": lambda c: "ENABLED",
    "campaign_budget.delivery_method": lambda c: "STANDARD",
    "customer.resource_name": lambda c: f"customers/{c.customer.id}",
    "customer.id": lambda c: c.customer.id,
    "customer.descriptive_name": lambda c: c.customer.descriptive_name,
    "customer.currency_code": lambda c: c.customer.currency_code,
    "customer.time_zone": lambda c: c.customer.time_zone,
    "customer.manager": lambda c: c.customer.manager,
    "customer.status": lambda c: "ENABLED",
    "customer_client.resource_name": lambda c: f"customers/{c.customer.id}/customerClients/{_client_of(c).id}",
    "customer_client.client_customer": lambda c: f"customers/{_client_of(c).id}",
    "customer_client.id": lambda c: _client_of(c).id,
    "customer_client.descriptive_name": lambda c: _client_of(c).descriptive_name,
    "customer_client.currency_code": lambda c: _client_of(c).currency_code,
    "customer_client.time_zone": lambda c: _client_of(c).time_zone,
    "customer_client.manager": lambda c: _client_of(c).manager,
    "customer_client.level": lambda c: c.level,
    "customer_client.status": lambda c: "ENABLED",
    "metrics.impressions": lambda c: c.metrics.impressions,
    "metrics.clicks": lambda c: c.metrics.clicks,
    "metrics.cost_micros": lambda c: c.metrics.cost_micros,
    "metrics.conversions": lambda c: c.metrics.conversions,
    "metrics.conversions_value": lambda c: c.metrics.conversions_value,
    "segments.date": lambda c: c.day.isoformat(),  # type: ignore[union-attr]
}

# Which field prefixes each FROM resource may select (the real API allows more).
_SELECTABLE = {
    "campaign": {"campaign", "campaign_budget", "customer", "metrics", "segments"},
    "campaign_budget": {"campaign_budget", "customer"},
    "customer": {"customer"},
    "customer_client": {"customer_client", "customer"},
}
_RESOURCES_WITH_NAMES = ("campaign", "campaign_budget", "customer", "customer_client")


@dataclass(frozen=True)
class _Setter:
    resource: str
    field: str
    getter: Getter
    enum_numbers: dict[str, int] | None


class CompiledQuery:
    """A query checked against the row message type and ready to produce rows."""

    def __init__(self, query: Query, row_descriptor: Any, state: GoogleSandboxState, customer: SandboxCustomer) -> None:
        self.query = query
        self.state = state
        self.customer = customer
        if query.resource not in _SELECTABLE:
            raise GaqlError(
                "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE",
                f"The sandbox serves FROM {', '.join(sorted(_SELECTABLE))}; not {query.resource!r}.",
            )
        self.selects_date = "segments.date" in query.fields
        self.selects_metrics = any(f.startswith("metrics.") for f in query.fields)
        if customer.manager and self.selects_metrics:
            raise GaqlError("REQUESTED_METRICS_FOR_MANAGER", "Metrics cannot be requested for a manager account.")
        self.setters = [self._setter(name, row_descriptor, query.resource) for name in query.fields]
        touched = {name.split(".", 1)[0] for name in query.fields}
        for resource in _RESOURCES_WITH_NAMES:
            full = f"{resource}.resource_name"
            if resource in touched and full not in query.fields:
                self.setters.append(self._setter(full, row_descriptor, query.resource))
        self.date_range = self._date_range()
        self.filters = [self._filter(c) for c in query.conditions if c.field != "segments.date"]

    @staticmethod
    def _setter(name: str, row_descriptor: Any, resource: str) -> _Setter:
        prefix, _, field_name = name.partition(".")
        message_field = row_descriptor.fields_by_name.get(prefix)
        if message_field is None or message_field.message_type is None:
            raise GaqlError("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: {name!r}.")
        field_descriptor = message_field.message_type.fields_by_name.get(field_name)
        if field_descriptor is None:
            raise GaqlError("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: {name!r}.")
        if prefix not in _SELECTABLE[resource]:
            raise GaqlError(
                "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE", f"{name!r} cannot be selected FROM {resource}."
            )
        getter = _GETTERS.get(name)
        if getter is None:
            raise GaqlError("UNRECOGNIZED_FIELD", f"The sandbox does not serve the field {name!r}.")
        enum_numbers = None
        if field_descriptor.enum_type is not None:
            enum_numbers = {v.name: v.number for v in field_descriptor.enum_type.values}
        return _Setter(prefix, field_name, getter, enum_numbers)

    # --- WHERE ---------------------------------------------------------------------------------

    def _date_range(self) -> tuple[date, date] | None:
        """The day range the query covers, clipped to the days that have metrics."""
        window_first, window_last = self.state.data.metric_window(self.customer)
        date_conditions = [c for c in self.query.conditions if c.field == "segments.date"]
        if not date_conditions:
            if self.selects_date:
                raise GaqlError(
                    "EXPECTED_FILTERS_ON_DATE_RANGE", "segments.date in SELECT needs a finite date range in WHERE."
                )
            return (window_first, window_last) if self.selects_metrics else None
        first, last = date.min, date.max
        for condition in date_conditions:
            low, high = self._date_bounds(condition)
            first, last = max(first, low), min(last, high)
        return max(first, window_first), min(last, window_last)

    def _date_bounds(self, condition: Condition) -> tuple[date, date]:
        today = self.customer.today()
        op = condition.operator
        if op == "DURING":
            return _during(condition.values[0], today)
        if op == "BETWEEN":
            return _parse_date(condition.values[0]), _parse_date(condition.values[1])
        if op in ("=", ">=", ">", "<=", "<"):
            day = _parse_date(condition.values[0])
            return {
                "=": (day, day),
                ">=": (day, date.max),
                ">": (day + timedelta(days=1), date.max),
                "<=": (date.min, day),
                "<": (date.min, day - timedelta(days=1)),
            }[op]
        raise GaqlError("BAD_OPERATOR", f"Operator {op} is not supported on segments.date by the sandbox.")

    def _filter(self, condition: Condition) -> Callable[[RowContext], bool]:
        getter = _GETTERS.get(condition.field)
        if getter is None:
            raise GaqlError("UNRECOGNIZED_FIELD", f"The sandbox cannot filter on {condition.field!r}.")
        prefix = condition.field.split(".", 1)[0]
        if prefix not in _SELECTABLE[self.query.resource]:
            raise GaqlError(
                "PROHIBITED_RESOURCE_TYPE_IN_WHERE_CLAUSE",
                f"{condition.field!r} cannot filter FROM {self.query.resource}.",
            )
        values = [literal.value for literal in condition.values]
        op = condition.operator

        def coerce(actual: Any, wanted: Any) -> Any:
            # campaign.id = '123' and campaign.id = 123 both work in GAQL.
            if isinstance(actual, int) and not isinstance(actual, bool) and isinstance(wanted, str):
                try:
                    return int(wanted)
                except ValueError:
                    return wanted
            return wanted

        def matches(ctx: RowContext) -> bool:
            actual = getter(ctx)
            if op == "IS NULL":
                return actual is None
            if op == "IS NOT NULL":
                return actual is not None
            wanted = [coerce(actual, v) for v in values]
            if op == "=":
                return actual == wanted[0]
            if op == "!=":
                return actual != wanted[0]
            if op == "IN":
                return actual in wanted
            if op == "NOT IN":
                return actual not in wanted
            if op in ("<", "<=", ">", ">="):
                if actual is None:
                    return False
                return {
                    "<": actual < wanted[0],
                    "<=": actual <= wanted[0],
                    ">": actual > wanted[0],
                    ">=": actual >= wanted[0],
                }[op]
            raise GaqlError("BAD_OPERATOR", f"Operator {op} is not supported by the sandbox.")

        # Fail on an impossible operator at compile time, not on the first row.
        if op not in ("=", "!=", "IN", "NOT IN", "<", "<=", ">", ">=", "IS NULL", "IS NOT NULL"):
            raise GaqlError("BAD_OPERATOR", f"Operator {op} is not supported on {condition.field} by the sandbox.")
        return matches

    # --- Rows ----------------------------------------------------------------------------------

    def _wanted_campaign_ids(self) -> list[int] | None:
        """campaign.id = X / IN (...) is answered by direct lookup instead of a scan."""
        for condition in self.query.conditions:
            if condition.field == "campaign.id" and condition.operator in ("=", "IN"):
                ids = []
                for literal in condition.values:
                    try:
                        ids.append(int(literal.value))
                    except (TypeError, ValueError):
                        raise GaqlError("BAD_NUMBER", f"Bad campaign id {literal.value!r}.") from None
                return ids
        return None

    def _days(self) -> list[date]:
        if self.date_range is None:
            return []
        first, last = self.date_range
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def contexts(self) -> Iterator[RowContext]:
        rows = self._all_contexts()
        if self.filters:
            rows = (ctx for ctx in rows if all(f(ctx) for f in self.filters))
        if self.query.limit is not None:
            rows = islice(rows, self.query.limit)
        return rows

    def _campaigns(self) -> Iterator[SandboxCampaign]:
        data = self.state.data
        wanted = self._wanted_campaign_ids()
        if wanted is None:
            yield from data.campaigns(self.customer.id)
            return
        for campaign_id in wanted:
            campaign = data.campaign(self.customer.id, campaign_id)
            if campaign is not None:
                yield campaign

    def _all_contexts(self) -> Iterator[RowContext]:
        state, customer, resource = self.state, self.customer, self.query.resource
        if resource == "customer":
            yield RowContext(state, customer)
        elif resource == "customer_client":
            yield RowContext(state, customer, client=customer, level=0)
            for client in state.data.clients_of(customer.id):
                yield RowContext(state, customer, client=client, level=1)
        elif resource == "campaign_budget":
            for budget in state.data.budgets(customer.id):
                yield RowContext(state, customer, budget=budget)
        elif self.selects_date:
            days = self._days()
            if self.query.order_by and self.query.order_by[0][0] == "segments.date":
                # Day-major order, so ORDER BY segments.date holds without sorting anything.
                if self.query.order_by[0][1]:
                    days.reverse()
                for day in days:
                    for campaign in self._campaigns():
                        yield RowContext(state, customer, campaign=campaign, day=day)
            else:
                for campaign in self._campaigns():
                    for day in days:
                        yield RowContext(state, customer, campaign=campaign, day=day)
        else:
            for campaign in self._campaigns():
                yield RowContext(state, customer, campaign=campaign, date_range=self.date_range)

    def fill(self, row: Any, ctx: RowContext) -> None:
        """Write the selected fields of ``ctx`` into a raw GoogleAdsRow protobuf."""
        for setter in self.setters:
            value = setter.getter(ctx)
            if value is None:
                continue
            if setter.enum_numbers is not None:
                value = setter.enum_numbers[value]
            setattr(getattr(row, setter.resource), setter.field, value)


def _parse_date(literal: Literal) -> date:
    if not isinstance(literal.value, str) or literal.is_enum:
        raise GaqlError("INVALID_DATE_FORMAT", f"Expected a 'YYYY-MM-DD' date, got {literal.value!r}.")
    try:
        return date.fromisoformat(literal.value)
    except ValueError:
        raise GaqlError("INVALID_DATE_FORMAT", f"Expected a 'YYYY-MM-DD' date, got {literal.value!r}.") from None


def _during(literal: Literal, today: date) -> tuple[date, date]:
    name = str(literal.value).upper()
    yesterday = today - timedelta(days=1)
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    ranges = {
        "TODAY": (today, today),
        "YESTERDAY": (yesterday, yesterday),
        "LAST_7_DAYS": (today - timedelta(days=7), yesterday),
        "LAST_14_DAYS": (today - timedelta(days=14), yesterday),
        "LAST_30_DAYS": (today - timedelta(days=30), yesterday),
        "THIS_MONTH": (first_of_month, today),
        "LAST_MONTH": (last_month_end.replace(day=1), last_month_end),
    }
    if not literal.is_enum or name not in ranges:
        raise GaqlError(
            "INVALID_VALUE_WITH_DURING_OPERATOR",
            f"DURING takes one of {', '.join(ranges)} in the sandbox; got {literal.value!r}.",
        )
    return ranges[name]
