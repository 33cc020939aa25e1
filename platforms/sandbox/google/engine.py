"""Runs a parsed GAQL query against the sandbox data and fills GoogleAdsRow messages.

Rows are produced lazily, one at a time, straight into the response message being built, so a
10,000-campaign x 90-day stream never holds more than one batch. Only the selected fields are
set (plus each touched resource's resource_name, as the real API does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from typing import Any, cast

from platforms.sandbox.google.data import (
    ConversionAction,
    DailyMetrics,
    SandboxAdGroup,
    SandboxBudget,
    SandboxCampaign,
    SandboxCustomer,
)
from platforms.sandbox.google.gaql import Condition, GaqlError, Literal, Query
from platforms.sandbox.google.state import GoogleSandboxState


class RowContext:
    """One result row before it is written: the entities it is about and, maybe, a day."""

    __slots__ = (
        "_metrics",
        "ad_group",
        "budget",
        "campaign",
        "client",
        "conversion_action",
        "customer",
        "date_range",
        "day",
        "level",
        "state",
    )

    def __init__(
        self,
        state: GoogleSandboxState,
        customer: SandboxCustomer,
        *,
        campaign: SandboxCampaign | None = None,
        ad_group: SandboxAdGroup | None = None,
        budget: SandboxBudget | None = None,
        client: SandboxCustomer | None = None,
        conversion_action: ConversionAction | None = None,
        level: int = 0,
        day: date | None = None,
        date_range: tuple[date, date] | None = None,
        metrics: DailyMetrics | None = None,
    ) -> None:
        self.state = state
        self.customer = customer
        self.ad_group = ad_group
        self.campaign = campaign if campaign is not None else (ad_group.campaign if ad_group else None)
        self.budget = budget if budget is not None else (self.campaign.budget if self.campaign else None)
        self.client = client
        self.conversion_action = conversion_action
        self.level = level
        self.day = day
        self.date_range = date_range
        self._metrics = metrics

    @property
    def metrics(self) -> DailyMetrics:
        if self._metrics is None:
            self._metrics = self._compute_metrics()
        return self._metrics

    def _day_metrics(self, day: date) -> DailyMetrics:
        data = self.state.data
        if self.ad_group is not None:
            return data.ad_group_metrics(self.ad_group.campaign, day)[self.ad_group.position]
        return data.campaign_metrics(self.campaign, day)  # type: ignore[arg-type]

    def _compute_metrics(self) -> DailyMetrics:
        if self.campaign is None:
            return DailyMetrics(0, 0, 0, 0.0, 0.0)
        if self.day is not None:
            return self._day_metrics(self.day)
        # No date segment: the metrics of the whole range, summed, as the API aggregates them.
        assert self.date_range is not None
        first, last = self.date_range
        return _sum_metrics(self._day_metrics(first + timedelta(days=n)) for n in range((last - first).days + 1))


def _sum_metrics(rows: Iterable[DailyMetrics]) -> DailyMetrics:
    totals: list[Any] = [0, 0, 0, 0.0, 0.0]  # three int counts, then the two float conversion figures
    for m in rows:
        totals[0] += m.impressions
        totals[1] += m.clicks
        totals[2] += m.cost_micros
        totals[3] += m.conversions
        totals[4] += m.conversions_value
    return DailyMetrics(totals[0], totals[1], totals[2], round(totals[3], 2), round(totals[4], 2))


Getter = Callable[[RowContext], Any]


def _campaign_resource(c: RowContext) -> str:
    return f"customers/{c.customer.id}/campaigns/{c.campaign.id}"  # type: ignore[union-attr]


def _budget_resource(c: RowContext) -> str:
    return f"customers/{c.customer.id}/campaignBudgets/{c.budget.id}"  # type: ignore[union-attr]


def _ad_group_resource(c: RowContext) -> str:
    return f"customers/{c.customer.id}/adGroups/{c.ad_group.id}"  # type: ignore[union-attr]


# A getter is only asked for fields of the row's resource (the query was checked against FROM),
# so the entity it reads is set on that row: these read it without a None check, as the table did.
def _campaign(c: RowContext) -> SandboxCampaign:
    return cast(SandboxCampaign, c.campaign)


def _budget(c: RowContext) -> SandboxBudget:
    return cast(SandboxBudget, c.budget)


def _ad_group(c: RowContext) -> SandboxAdGroup:
    return cast(SandboxAdGroup, c.ad_group)


def _conversion_action(c: RowContext) -> ConversionAction:
    return cast(ConversionAction, c.conversion_action)


def _client_of(c: RowContext) -> SandboxCustomer:
    return c.client if c.client is not None else c.customer


def _flight_bound(c: RowContext, end: bool) -> str | None:
    """A total-budget campaign's current flight in the account's time zone, as Google spells it."""
    flight = c.campaign.flight(c.customer.today())  # type: ignore[union-attr]
    if flight is None:
        return None
    return f"{flight[1].isoformat()} 23:59:59" if end else f"{flight[0].isoformat()} 00:00:00"


# Natural values: ints, strings, bools, enum *names*; converted to wire values when set.
_GETTERS: dict[str, Getter] = {
    "campaign.resource_name": _campaign_resource,
    "campaign.id": lambda c: _campaign(c).id,
    "campaign.name": lambda c: _campaign(c).name,
    "campaign.status": lambda c: c.state.campaign_status(_campaign(c)),
    "campaign.start_date_time": lambda c: _flight_bound(c, end=False),
    "campaign.end_date_time": lambda c: _flight_bound(c, end=True),
    "campaign.campaign_budget": _budget_resource,
    "campaign_budget.resource_name": _budget_resource,
    "campaign_budget.id": lambda c: _budget(c).id,
    "campaign_budget.name": lambda c: _budget(c).name,
    "campaign_budget.amount_micros": lambda c: c.state.budget_amount(_budget(c)),
    "campaign_budget.total_amount_micros": lambda c: c.state.budget_total(_budget(c)),  # custom period only
    "campaign_budget.explicitly_shared": lambda c: _budget(c).explicitly_shared,
    "campaign_budget.reference_count": lambda c: _budget(c).reference_count,
    "campaign_budget.period": lambda c: _budget(c).period,
    "campaign_budget.status": lambda c: "ENABLED",
    "campaign_budget.delivery_method": lambda c: "STANDARD",
    "ad_group.resource_name": _ad_group_resource,
    "ad_group.id": lambda c: _ad_group(c).id,
    "ad_group.name": lambda c: _ad_group(c).name,
    "ad_group.status": lambda c: c.state.ad_group_status(_ad_group(c)),
    "ad_group.campaign": _campaign_resource,
    "conversion_action.resource_name": lambda c: (
        f"customers/{c.customer.id}/conversionActions/{_conversion_action(c).id}"
    ),
    "conversion_action.id": lambda c: _conversion_action(c).id,
    "conversion_action.name": lambda c: _conversion_action(c).name,
    "conversion_action.status": lambda c: "ENABLED",
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
    "ad_group": {"ad_group", "campaign", "campaign_budget", "customer", "metrics", "segments"},
    "campaign": {"campaign", "campaign_budget", "customer", "metrics", "segments"},
    "campaign_budget": {"campaign_budget", "customer"},
    "conversion_action": {"conversion_action", "customer"},
    "customer": {"customer"},
    "customer_client": {"customer_client", "customer"},
}
_RESOURCES_WITH_NAMES = ("ad_group", "campaign", "campaign_budget", "conversion_action", "customer", "customer_client")
# Streams come out in these orders without sorting: by ids (ascending) then day, or day first.
_ID_ORDERS = {
    "campaign": (("campaign.id",),),
    "ad_group": (("campaign.id", "ad_group.id"), ("ad_group.id",)),
}


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
        self.sort_keys = [(self._sort_getter(name), descending) for name, descending in query.order_by]
        self.stream_plan = self._stream_plan()

    def _sort_getter(self, name: str) -> Getter:
        getter = _GETTERS.get(name)
        prefix = name.split(".", 1)[0]
        if getter is None or prefix not in _SELECTABLE[self.query.resource]:
            raise GaqlError("UNRECOGNIZED_FIELD", f"The sandbox cannot order FROM {self.query.resource} by {name!r}.")
        if name == "segments.date" and not self.selects_date:
            raise GaqlError("INVALID_ORDER_BY_FIELD", "ORDER BY segments.date needs segments.date in SELECT.")
        return getter

    def _stream_plan(self) -> tuple[bool, bool] | None:
        """(day-major, newest day first) when rows come out in the ORDER BY order as generated;
        None when they must be sorted. Generated order: ids ascending, each id's days in order."""
        order = list(self.query.order_by)
        if not order:
            return False, False
        id_orders = _ID_ORDERS.get(self.query.resource)
        if id_orders is None:
            return None
        names = [name for name, _ in order]
        day_major = False
        reverse_days = False
        if names[0] == "segments.date":
            day_major, reverse_days = True, order[0][1]
            order, names = order[1:], names[1:]
        if any(descending for _, descending in order):
            return None
        for id_order in id_orders:
            natural = list(id_order) if day_major else [*id_order, "segments.date"]
            if names == natural[: len(names)]:
                return day_major, reverse_days
        return None

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
                return cast(bool, actual == wanted[0])
            if op == "!=":
                return cast(bool, actual != wanted[0])
            if op == "IN":
                return actual in wanted
            if op == "NOT IN":
                return actual not in wanted
            if op in ("<", "<=", ">", ">="):
                if actual is None:
                    return False
                outcomes: dict[str, bool] = {
                    "<": actual < wanted[0],
                    "<=": actual <= wanted[0],
                    ">": actual > wanted[0],
                    ">=": actual >= wanted[0],
                }
                return outcomes[op]
            raise GaqlError("BAD_OPERATOR", f"Operator {op} is not supported by the sandbox.")

        # Fail on an impossible operator at compile time, not on the first row.
        if op not in ("=", "!=", "IN", "NOT IN", "<", "<=", ">", ">=", "IS NULL", "IS NOT NULL"):
            raise GaqlError("BAD_OPERATOR", f"Operator {op} is not supported on {condition.field} by the sandbox.")
        return matches

    # --- Rows ----------------------------------------------------------------------------------

    def _wanted_ids(self, field_name: str) -> list[int] | None:
        """``field = X`` / ``IN (...)`` on an id is answered by direct lookup instead of a scan."""
        for condition in self.query.conditions:
            if condition.field == field_name and condition.operator in ("=", "IN"):
                ids = set()
                for literal in condition.values:
                    try:
                        ids.add(int(literal.value))
                    except (TypeError, ValueError):
                        raise GaqlError("BAD_NUMBER", f"Bad id {literal.value!r} for {field_name}.") from None
                return sorted(ids)  # ascending, as a scan would give them
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
        if self.stream_plan is None:
            # An order the generator does not produce: sort what matched (small results; a
            # full-scale stream is read in its natural order, which needs no sorting).
            materialized = list(rows)
            for getter, descending in reversed(self.sort_keys):

                def sort_key(ctx: RowContext, g: Getter = getter) -> tuple[bool, Any]:
                    return _sort_value(g(ctx))

                materialized.sort(key=sort_key, reverse=descending)
            rows = iter(materialized)
        if self.query.limit is not None:
            rows = islice(rows, self.query.limit)
        return rows

    def _campaigns(self) -> Iterator[SandboxCampaign]:
        data = self.state.data
        wanted = self._wanted_ids("campaign.id")
        if wanted is None:
            yield from data.campaigns(self.customer.id)
            return
        for campaign_id in wanted:
            campaign = data.campaign(self.customer.id, campaign_id)
            if campaign is not None:
                yield campaign

    def _ad_groups_by_campaign(self) -> Iterator[tuple[SandboxCampaign, list[SandboxAdGroup]]]:
        data = self.state.data
        wanted = self._wanted_ids("ad_group.id")
        if wanted is None:
            for campaign in self._campaigns():
                yield campaign, data.ad_groups_of(campaign)
            return
        found = [g for g in (data.ad_group(self.customer.id, i) for i in wanted) if g is not None]
        by_campaign: dict[int, list[SandboxAdGroup]] = {}
        for ad_group in found:
            by_campaign.setdefault(ad_group.campaign.id, []).append(ad_group)
        for ad_groups in by_campaign.values():
            yield ad_groups[0].campaign, ad_groups

    def _all_contexts(self) -> Iterator[RowContext]:
        state, customer, resource = self.state, self.customer, self.query.resource
        day_major, reverse_days = self.stream_plan or (False, False)
        if resource == "customer":
            yield RowContext(state, customer)
        elif resource == "customer_client":
            yield RowContext(state, customer, client=customer, level=0)
            for client in state.data.clients_of(customer.id):
                yield RowContext(state, customer, client=client, level=1)
        elif resource == "campaign_budget":
            for budget in state.data.budgets(customer.id):
                yield RowContext(state, customer, budget=budget)
        elif resource == "conversion_action":
            for action in state.data.conversion_actions:
                if action.customer_id == customer.id:
                    yield RowContext(state, customer, conversion_action=action)
        elif resource == "ad_group":
            yield from self._ad_group_contexts(day_major, reverse_days)
        elif self.selects_date:
            days = self._days()
            if reverse_days:
                days.reverse()
            if day_major:
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

    def _ad_group_contexts(self, day_major: bool, reverse_days: bool) -> Iterator[RowContext]:
        """Ad group rows; a campaign-day is computed once and split over its ad groups."""
        state, customer, data = self.state, self.customer, self.state.data
        if not self.selects_date:
            for campaign, ad_groups in self._ad_groups_by_campaign():
                if not self.selects_metrics:
                    for ad_group in ad_groups:
                        yield RowContext(state, customer, ad_group=ad_group)
                    continue
                per_day = [data.ad_group_metrics(campaign, day) for day in self._days()]
                for ad_group in ad_groups:
                    total = _sum_metrics(parts[ad_group.position] for parts in per_day)
                    yield RowContext(state, customer, ad_group=ad_group, date_range=self.date_range, metrics=total)
            return
        days = self._days()
        if reverse_days:
            days.reverse()
        if day_major:
            groups = list(self._ad_groups_by_campaign()) if self._wanted_ids("ad_group.id") is not None else None
            for day in days:
                for campaign, ad_groups in groups if groups is not None else self._ad_groups_by_campaign():
                    parts = data.ad_group_metrics(campaign, day)
                    for ad_group in ad_groups:
                        yield RowContext(state, customer, ad_group=ad_group, day=day, metrics=parts[ad_group.position])
            return
        for campaign, ad_groups in self._ad_groups_by_campaign():
            # One campaign's days at a time: memory is days x ad groups, whatever the account size.
            per_day = [data.ad_group_metrics(campaign, day) for day in days]
            for ad_group in ad_groups:
                for day, parts in zip(days, per_day, strict=True):
                    yield RowContext(state, customer, ad_group=ad_group, day=day, metrics=parts[ad_group.position])

    def fill(self, row: Any, ctx: RowContext) -> None:
        """Write the selected fields of ``ctx`` into a raw GoogleAdsRow protobuf."""
        for setter in self.setters:
            value = setter.getter(ctx)
            if value is None:
                continue
            if setter.enum_numbers is not None:
                value = setter.enum_numbers[value]
            setattr(getattr(row, setter.resource), setter.field, value)


def _sort_value(value: Any) -> tuple[bool, Any]:
    # Unset values sort first, as no value at all.
    return (value is not None, value if value is not None else 0)


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
