"""The Google Ads API emulator: real gRPC over TLS, the SDK's own message types on the wire.

The google-ads wheel ships proto-plus types and client transports but no ``*_pb2_grpc``
servicers, so each method is registered with ``grpc.method_handlers_generic_handler`` using the
request type's ``deserialize`` and the response type's ``serialize``, for every API version
the installed package carries. Types are imported on a version's first call: loading all of
them up front costs seconds per version.

Failures look like Google's: the ``GoogleAdsFailure`` in the
``google.ads.googleads.<version>.errors.googleadsfailure-bin`` trailer, a ``request-id``
trailer, and the matching status code, so the client's interceptor raises what it raises in
production (GoogleAdsException, or api_core ResourceExhausted for quota).

Writes: CampaignBudgetService (``amount_micros`` of daily budgets, ``total_amount_micros`` of
custom-period ones), CampaignService and AdGroupService (``status``) are applied for real, each
operation checked as Google checks it; ``validate_only`` runs every check and changes nothing;
``partial_failure`` applies the operations that pass. Budgets below the per-day minimum
(``platforms.budget_rules``) are refused with BUDGET_BELOW_PER_DAY_MINIMUM and its
``budget_per_day_minimum_error_details``; a total budget below what the flight already spent with
RangeError.TOO_LOW.

Conversion uploads: a gclid that starts with ``UNKNOWN`` is a click Google never saw
(CLICK_NOT_FOUND); one with characters outside ``[A-Za-z0-9_-]`` is UNPARSEABLE_GCLID. Every
other gclid is a known click. A conversion without a click id but with hashed user identifiers
is an enhanced conversion for leads and is accepted, as Google accepts it; with neither it is
refused.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import threading
import uuid
import zlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import google.ads.googleads as googleads_package
import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from platforms.base import minor_unit_micros
from platforms.budget_rules import google_min_daily_budget_micros
from platforms.sandbox import credentials
from platforms.sandbox.faults import Faults
from platforms.sandbox.google.certs import ensure_tls_files
from platforms.sandbox.google.data import GoogleSandboxData, SandboxCustomer, daily_metrics
from platforms.sandbox.google.engine import CompiledQuery
from platforms.sandbox.google.gaql import GaqlError, parse
from platforms.sandbox.google.oauth import OAuthServer, login_reaches
from platforms.sandbox.google.state import CallRecord, GoogleSandboxState, StoredConversion, conversion_key

logger = logging.getLogger(__name__)

MAX_CONVERSIONS_PER_REQUEST = 2_000
_GCLID = re.compile(r"^[A-Za-z0-9_-]{1,512}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_BUDGET_RESOURCE = re.compile(r"^customers/(\d+)/campaignBudgets/(\d+)$")
_CAMPAIGN_RESOURCE = re.compile(r"^customers/(\d+)/campaigns/(\d+)$")
_AD_GROUP_RESOURCE = re.compile(r"^customers/(\d+)/adGroups/(\d+)$")
# Statuses an update may set; REMOVED is a remove operation, not an update.
_SETTABLE_STATUSES = ("ENABLED", "PAUSED")
# Google refuses amounts above this (MONEY_AMOUNT_TOO_LARGE); a trillion units is far past any real one.
_MAX_BUDGET_MICROS = 10**18
_CONVERSION_ACTION_RESOURCE = re.compile(r"^customers/(\d+)/conversionActions/(\d+)$")
UNKNOWN_GCLID_PREFIX = "UNKNOWN"
# Stands in for the click in the duplicate key of a conversion uploaded without one.
IDENTIFIERS_KEY_PREFIX = "identifiers:"


def shipped_api_versions() -> list[str]:
    """The API versions the installed google-ads package carries (v23...v26 for 34.x)."""
    root = Path(googleads_package.__file__).parent
    versions = [p.name for p in root.iterdir() if p.is_dir() and re.fullmatch(r"v\d+", p.name)]
    return sorted(versions, key=lambda v: int(v[1:]))


# --- Per-version types --------------------------------------------------------------------------


class _VersionTypes:
    """The message classes of one API version, imported on first use."""

    def __init__(self, version: str) -> None:
        base = f"google.ads.googleads.{version}"
        self.version = version
        self.google_ads = import_module(f"{base}.services.types.google_ads_service")
        self.customer = import_module(f"{base}.services.types.customer_service")
        self.campaign_budget = import_module(f"{base}.services.types.campaign_budget_service")
        self.campaign_service = import_module(f"{base}.services.types.campaign_service")
        self.ad_group_service = import_module(f"{base}.services.types.ad_group_service")
        self.conversion_upload = import_module(f"{base}.services.types.conversion_upload_service")
        self.errors: ModuleType = import_module(f"{base}.errors.types.errors")
        self.failure_trailer_key = f"{base}.errors.googleadsfailure-bin"
        self.row_descriptor = self.google_ads.GoogleAdsRow.pb().DESCRIPTOR


_types_cache: dict[str, _VersionTypes] = {}
_types_lock = threading.Lock()


def _types(version: str) -> _VersionTypes:
    with _types_lock:
        if version not in _types_cache:
            _types_cache[version] = _VersionTypes(version)
        return _types_cache[version]


# service -> method -> (streaming, types module attribute, request class, response class)
_METHODS: dict[str, dict[str, tuple[bool, str, str, str]]] = {
    "GoogleAdsService": {
        "Search": (False, "google_ads", "SearchGoogleAdsRequest", "SearchGoogleAdsResponse"),
        "SearchStream": (True, "google_ads", "SearchGoogleAdsStreamRequest", "SearchGoogleAdsStreamResponse"),
    },
    "CustomerService": {
        "ListAccessibleCustomers": (
            False,
            "customer",
            "ListAccessibleCustomersRequest",
            "ListAccessibleCustomersResponse",
        ),
    },
    "CampaignBudgetService": {
        "MutateCampaignBudgets": (
            False,
            "campaign_budget",
            "MutateCampaignBudgetsRequest",
            "MutateCampaignBudgetsResponse",
        ),
    },
    "CampaignService": {
        "MutateCampaigns": (False, "campaign_service", "MutateCampaignsRequest", "MutateCampaignsResponse"),
    },
    "AdGroupService": {
        "MutateAdGroups": (False, "ad_group_service", "MutateAdGroupsRequest", "MutateAdGroupsResponse"),
    },
    "ConversionUploadService": {
        "UploadClickConversions": (
            False,
            "conversion_upload",
            "UploadClickConversionsRequest",
            "UploadClickConversionsResponse",
        ),
    },
}


# --- Errors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorSpec:
    """One GoogleAdsError: ``kind`` is the ErrorCode oneof field, ``code`` the enum name."""

    kind: str
    code: str
    message: str
    field_path: tuple[tuple[str, int | None], ...] = ()
    retry_delay_seconds: int | None = None
    # BudgetPerDayMinimumErrorDetails fields, for BUDGET_BELOW_PER_DAY_MINIMUM.
    budget_minimum: dict[str, Any] | None = None


@dataclass
class ApiFailure(Exception):
    status: grpc.StatusCode
    errors: list[ErrorSpec] = field(default_factory=list)
    message: str = ""
    with_trailer: bool = True  # UNAVAILABLE from the front end carries no GoogleAdsFailure

    def __str__(self) -> str:
        return self.message or "; ".join(e.message for e in self.errors)


def _failure_pb(types: _VersionTypes, errors: list[ErrorSpec], request_id: str) -> Any:
    failure = types.errors.GoogleAdsFailure.pb()()
    failure.request_id = request_id
    for spec in errors:
        error = failure.errors.add()
        enum = error.error_code.DESCRIPTOR.fields_by_name[spec.kind].enum_type
        setattr(error.error_code, spec.kind, enum.values_by_name[spec.code].number)
        error.message = spec.message
        for name, index in spec.field_path:
            element = error.location.field_path_elements.add()
            element.field_name = name
            if index is not None:
                element.index = index
        if spec.retry_delay_seconds is not None:
            details = error.details.quota_error_details
            details.rate_scope = types.errors.QuotaErrorDetails.QuotaRateScope.ACCOUNT
            details.rate_name = "Requests per account"
            details.retry_delay.seconds = spec.retry_delay_seconds
        if spec.budget_minimum is not None:
            minimum = error.details.budget_per_day_minimum_error_details
            for name, value in spec.budget_minimum.items():
                setattr(minimum, name, value)
    return failure


def _partial_failure_status(types: _VersionTypes, errors: list[ErrorSpec], request_id: str) -> status_pb2.Status:
    packed = any_pb2.Any()
    packed.Pack(_failure_pb(types, errors, request_id))
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=f"Multiple errors in ‘details’. First error: {errors[0].message}",
        details=[packed],
    )


# --- The servicer -------------------------------------------------------------------------------


@dataclass
class _Call:
    """What one RPC knows about itself while it runs."""

    version: str
    service: str
    method: str
    context: grpc.ServicerContext
    request_id: str
    metadata: dict[str, str]
    customer_id: str = ""
    status: str = "OK"
    messages: int = 0  # response messages sent: pages or stream batches

    @property
    def types(self) -> _VersionTypes:
        return _types(self.version)


class GoogleAdsEmulator:
    def __init__(self, state: GoogleSandboxState) -> None:
        self.state = state

    # --- Plumbing ------------------------------------------------------------------------------

    def generic_handlers(self, versions: list[str]) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for version in versions:
            for service, methods in _METHODS.items():
                method_handlers = {
                    method: self._method_handler(version, service, method, *spec) for method, spec in methods.items()
                }
                handlers.append(
                    grpc.method_handlers_generic_handler(
                        f"google.ads.googleads.{version}.services.{service}", method_handlers
                    )
                )
        return handlers

    def _method_handler(
        self, version: str, service: str, method: str, streaming: bool, module: str, request: str, response: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        def request_class() -> Any:
            return getattr(getattr(_types(version), module), request)

        def response_class() -> Any:
            return getattr(getattr(_types(version), module), response)

        def deserialize(payload: bytes) -> Any:
            return request_class().deserialize(payload)

        def serialize(message: Any) -> bytes:
            return cast(bytes, response_class().serialize(message))

        implementation = getattr(self, f"_{_snake(method)}")
        if streaming:

            def stream_behavior(req: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                call = self._begin(version, service, method, req, context)
                try:
                    for message in implementation(call, req):
                        call.messages += 1
                        yield message
                    self._maybe_fail_after_accept(call)
                    context.set_trailing_metadata((("request-id", call.request_id),))
                except ApiFailure as failure:
                    self._abort(call, failure)
                finally:
                    if call.status == "OK" and not context.is_active():
                        call.status = "CANCELLED"  # the client went away mid-stream
                    self._record(call)

            return grpc.unary_stream_rpc_method_handler(
                stream_behavior, request_deserializer=deserialize, response_serializer=serialize
            )

        def unary_behavior(req: Any, context: grpc.ServicerContext) -> Any:
            call = self._begin(version, service, method, req, context)
            try:
                result = implementation(call, req)
                call.messages = 1
                self._maybe_fail_after_accept(call)
                context.set_trailing_metadata((("request-id", call.request_id),))
                return result
            except ApiFailure as failure:
                self._abort(call, failure)
            finally:
                self._record(call)

        return grpc.unary_unary_rpc_method_handler(
            unary_behavior, request_deserializer=deserialize, response_serializer=serialize
        )

    def _begin(self, version: str, service: str, method: str, request: Any, context: grpc.ServicerContext) -> _Call:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        call = _Call(
            version=version,
            service=service,
            method=method,
            context=context,
            request_id=uuid.uuid4().hex[:22],
            metadata=metadata,
            customer_id=str(getattr(request, "customer_id", "") or ""),
        )
        try:
            self._check_credentials(call)
            if call.customer_id:
                self._check_customer_access(call)
            self._inject_fault(call)
        except ApiFailure as failure:
            self._record(call, failure)
            self._abort(call, failure)
        return call

    def _record(self, call: _Call, failure: ApiFailure | None = None) -> None:
        if failure is not None:
            call.status = failure.status.name
        if call.status == "RECORDED":
            return
        self.state.record_call(
            CallRecord(
                version=call.version,
                service=call.service,
                method=call.method,
                customer_id=call.customer_id,
                login_customer_id=call.metadata.get("login-customer-id", ""),
                developer_token_sent="developer-token" in call.metadata,
                status=call.status,
                messages=call.messages,
            )
        )
        call.status = "RECORDED"

    def _abort(self, call: _Call, failure: ApiFailure) -> None:
        call.status = failure.status.name
        trailer: list[tuple[str, str | bytes]] = [("request-id", call.request_id)]
        if failure.with_trailer and failure.errors:
            failure_bytes = _failure_pb(call.types, failure.errors, call.request_id).SerializeToString()
            trailer.insert(0, (call.types.failure_trailer_key, failure_bytes))
        call.context.set_trailing_metadata(tuple(trailer))
        call.context.abort(failure.status, str(failure))

    def _check_credentials(self, call: _Call) -> None:
        authorization = call.metadata.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _auth_failure("OAUTH_TOKEN_HEADER_INVALID", "Missing or malformed authorization header.")
        status = self.state.token_status(token.strip())
        if status == "expired":
            raise _auth_failure("OAUTH_TOKEN_EXPIRED", "The OAuth access token has expired.")
        if status != "valid":
            raise _auth_failure("OAUTH_TOKEN_INVALID", "The OAuth access token is not valid.")
        developer_token = call.metadata.get("developer-token")
        if developer_token is not None and developer_token != credentials.GOOGLE_DEVELOPER_TOKEN:
            raise _auth_failure("DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")

    def _check_customer_access(self, call: _Call) -> None:
        data = self.state.data
        customer = data.customer(int(call.customer_id)) if call.customer_id.isdigit() else None
        if customer is None or not login_reaches(self.state, call.metadata, customer):
            raise ApiFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                [
                    ErrorSpec(
                        "authorization_error",
                        "USER_PERMISSION_DENIED",
                        "User doesn't have permission to access customer.",
                    )
                ],
            )
        login = call.metadata.get("login-customer-id", "").replace("-", "")
        if login and not login.isdigit():
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [ErrorSpec("header_error", "INVALID_LOGIN_CUSTOMER_ID", "The login customer id is not valid.")],
            )
        allowed = _allowed_logins(customer)
        if login and int(login) not in allowed:
            raise ApiFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                [
                    ErrorSpec(
                        "authorization_error",
                        "INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION",
                        "The login customer is not a manager of the customer being served.",
                    )
                ],
            )
        if not login and not customer.manager:
            raise ApiFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                [
                    ErrorSpec(
                        "authorization_error",
                        "USER_PERMISSION_DENIED",
                        "User doesn't have permission to access customer. Note: If you're accessing a client "
                        "customer, the manager's customer id must be set in the 'login-customer-id' header.",
                    )
                ],
            )

    def _inject_fault(self, call: _Call) -> None:
        faults = self.state.faults
        fault = faults.pick()
        if fault == "auth":
            raise _auth_failure("OAUTH_TOKEN_INVALID", "The OAuth access token is not valid (sandbox fault).")
        if fault == "quota":
            seconds = faults.quota_retry_seconds
            raise ApiFailure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                [
                    ErrorSpec(
                        "quota_error",
                        "RESOURCE_TEMPORARILY_EXHAUSTED",
                        f"Too many requests. Retry in {seconds} seconds.",
                        retry_delay_seconds=seconds,
                    )
                ],
            )
        if fault == "unavailable":
            raise ApiFailure(
                grpc.StatusCode.UNAVAILABLE, message="The service is currently unavailable.", with_trailer=False
            )

    def _maybe_fail_after_accept(self, call: _Call) -> None:
        """The work is done (and kept); the client never hears so, as after a lost answer."""
        if self.state.faults.roll(self.state.faults.timeout_after_accept):
            raise ApiFailure(grpc.StatusCode.DEADLINE_EXCEEDED, message="Deadline Exceeded", with_trailer=False)

    def _customer(self, call: _Call) -> SandboxCustomer:
        customer = self.state.data.customer(int(call.customer_id))
        assert customer is not None  # _check_customer_access ran
        return customer

    # --- GoogleAdsService ----------------------------------------------------------------------

    def _compile(self, call: _Call, query_text: str) -> CompiledQuery:
        try:
            return CompiledQuery(parse(query_text), call.types.row_descriptor, self.state, self._customer(call))
        except GaqlError as error:
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [ErrorSpec("query_error", error.code, error.message)],
            ) from None

    def _search(self, call: _Call, request: Any) -> Any:
        if request.page_size:
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [ErrorSpec("request_error", "PAGE_SIZE_NOT_SUPPORTED", "Setting the page size is not supported.")],
            )
        compiled = self._compile(call, request.query)
        page_size = self.state.data.search_page_size
        query_hash = zlib.crc32(request.query.encode())
        offset = _read_page_token(request.page_token, query_hash) if request.page_token else 0
        response_class = call.types.google_ads.SearchGoogleAdsResponse
        response = response_class.pb()()
        rows = compiled.contexts()
        taken = 0
        for ctx in rows:
            if taken < offset:
                taken += 1
                continue
            if taken >= offset + page_size:
                response.next_page_token = _page_token(offset + page_size, query_hash)
                break
            compiled.fill(response.results.add(), ctx)
            taken += 1
        response.field_mask.paths.extend(compiled.query.fields)
        return response_class.wrap(response)

    def _search_stream(self, call: _Call, request: Any) -> Iterator[Any]:
        compiled = self._compile(call, request.query)
        batch_size = self.state.data.stream_batch_size
        response_class = call.types.google_ads.SearchGoogleAdsStreamResponse
        fields = compiled.query.fields

        def new_batch() -> Any:
            batch = response_class.pb()()
            batch.field_mask.paths.extend(fields)
            batch.request_id = call.request_id
            return batch

        batch, count = new_batch(), 0
        for ctx in compiled.contexts():
            compiled.fill(batch.results.add(), ctx)
            count += 1
            if count == batch_size:
                yield response_class.wrap(batch)
                batch, count = new_batch(), 0
        if count:
            yield response_class.wrap(batch)

    # --- CustomerService -----------------------------------------------------------------------

    def _list_accessible_customers(self, call: _Call, request: Any) -> Any:
        response = call.types.customer.ListAccessibleCustomersResponse()
        response.resource_names.extend(
            f"customers/{c.id}"
            for c in self.state.data.customers
            if c.manager and login_reaches(self.state, call.metadata, c)
        )
        return response

    # --- CampaignBudgetService -----------------------------------------------------------------

    def _mutate_campaign_budgets(self, call: _Call, request: Any) -> Any:
        customer = self._customer(call)

        def apply(change: tuple[str, int, int]) -> None:
            field_name, budget_id, amount = change
            if field_name == "amount_micros":
                self.state.set_budget_amount(budget_id, amount)
            else:
                self.state.set_budget_total(budget_id, amount)

        return self._mutate(
            call,
            request,
            call.types.campaign_budget.MutateCampaignBudgetsResponse,
            lambda index, operation: self._budget_change(customer, index, operation),
            apply,
        )

    def _mutate(
        self,
        call: _Call,
        request: Any,
        response_class: Any,
        check: Any,
        apply: Any,
    ) -> Any:
        """The shape every Mutate* shares: check each operation, then apply all or none (or,
        with partial_failure, those that passed); validate_only checks and applies nothing."""
        operations = list(type(request).pb(request).operations)
        if not operations:
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [ErrorSpec("request_error", "OPERATION_REQUIRED", "At least one operation is required.")],
            )
        errors: list[ErrorSpec] = []
        changes: dict[int, tuple[str, tuple[Any, ...]]] = {}
        # One lock across checks and writes: a check never sees a half-applied request.
        with self.state.lock:
            for index, operation in enumerate(operations):
                error, change = check(index, operation)
                if error is not None:
                    errors.append(error)
                elif change is not None:
                    changes[index] = change
            if errors and not request.partial_failure:
                raise ApiFailure(grpc.StatusCode.INVALID_ARGUMENT, errors)
            response = response_class.pb()()
            if request.validate_only:
                return response_class.wrap(response)  # checked; nothing changes, no results
            for index in range(len(operations)):
                result = response.results.add()
                if index in changes:
                    resource_name, change = changes[index]
                    apply(change)
                    result.resource_name = resource_name
        if errors:
            response.partial_failure_error.CopyFrom(_partial_failure_status(call.types, errors, call.request_id))
        return response_class.wrap(response)

    def _budget_change(
        self, customer: SandboxCustomer, index: int, operation: Any
    ) -> tuple[ErrorSpec | None, tuple[str, tuple[str, int, int]] | None]:
        def error(kind: str, code: str, message: str, *path: str, **extra: Any) -> tuple[ErrorSpec, None]:
            field_path = (("operations", index), *((p, None) for p in path))
            return ErrorSpec(kind, code, message, field_path, **extra), None

        if operation.WhichOneof("operation") != "update":
            return error("mutate_error", "MUTATE_NOT_ALLOWED", "The sandbox only updates budgets.", "update")
        update = operation.update
        match = _BUDGET_RESOURCE.match(update.resource_name)
        if not match:
            return error(
                "request_error", "RESOURCE_NAME_MALFORMED", "Malformed budget resource name.", "update", "resource_name"
            )
        if int(match.group(1)) != customer.id:
            return error("mutate_error", "RESOURCE_NOT_FOUND", "Resource was not found.", "update", "resource_name")
        budget = self.state.data.budget(customer.id, int(match.group(2)))
        if budget is None:
            return error("mutate_error", "RESOURCE_NOT_FOUND", "Resource was not found.", "update", "resource_name")
        paths = list(operation.update_mask.paths)
        if not paths:
            return error("field_mask_error", "FIELD_MASK_MISSING", "The update mask is missing.", "update_mask")
        unsupported = [p for p in paths if p not in ("amount_micros", "total_amount_micros", "resource_name")]
        if unsupported:
            return error(
                "field_mask_error", "FIELD_NOT_FOUND", f"The sandbox cannot update {unsupported[0]!r}.", "update_mask"
            )
        amounts = [p for p in paths if p in ("amount_micros", "total_amount_micros")]
        if not amounts:
            return None, None
        if len(amounts) > 1:
            return error(
                "campaign_budget_error",
                "BUDGET_AMOUNT_MUST_BE_UNSET_FOR_CUSTOM_BUDGET_PERIOD"
                if budget.period == "CUSTOM_PERIOD"
                else "TOTAL_BUDGET_AMOUNT_MUST_BE_UNSET_FOR_BUDGET_PERIOD_DAILY",
                "A budget has either a daily amount or a total amount, not both.",
                "update",
                "total_amount_micros",
            )
        field_name = amounts[0]
        if field_name == "amount_micros" and budget.period == "CUSTOM_PERIOD":
            return error(
                "campaign_budget_error",
                "BUDGET_AMOUNT_MUST_BE_UNSET_FOR_CUSTOM_BUDGET_PERIOD",
                "Budget amount must be unset when BudgetPeriod is CUSTOM_PERIOD: set total_amount_micros.",
                "update",
                "amount_micros",
            )
        if field_name == "total_amount_micros" and budget.period != "CUSTOM_PERIOD":
            return error(
                "campaign_budget_error",
                "TOTAL_BUDGET_AMOUNT_MUST_BE_UNSET_FOR_BUDGET_PERIOD_DAILY",
                "Total budget amount must be unset when BudgetPeriod is DAILY: set amount_micros.",
                "update",
                "total_amount_micros",
            )
        amount = getattr(update, field_name)
        unit = minor_unit_micros(customer.currency_code)
        if amount < 0:
            return error(
                "campaign_budget_error", "NEGATIVE_MONEY_AMOUNT", "Amount must not be negative.", "update", field_name
            )
        if amount % unit:
            return error(
                "campaign_budget_error",
                "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT",
                f"Amount must be a multiple of the minimum currency unit ({unit} micros in {customer.currency_code}).",
                "update",
                field_name,
            )
        if amount > _MAX_BUDGET_MICROS:
            return error(
                "campaign_budget_error", "MONEY_AMOUNT_TOO_LARGE", "The amount is too large.", "update", field_name
            )
        per_day = google_min_daily_budget_micros(customer.currency_code)
        minimum = per_day
        campaign = self.state.data.campaigns_on_budget(customer.id, budget.id)[0]
        flight = campaign.flight(customer.today())
        if field_name == "total_amount_micros" and flight is not None:
            minimum = per_day * ((flight[1] - flight[0]).days + 1)
        if amount < minimum:
            which = "total_amount" if field_name == "total_amount_micros" else "amount"
            details: dict[str, Any] = {
                "currency_code": customer.currency_code,
                "budget_per_day_minimum_micros": per_day,
                f"minimum_budget_{which}_micros": minimum,
                f"failed_budget_{which}_micros": amount,
            }
            return error(
                "campaign_budget_error",
                "BUDGET_BELOW_PER_DAY_MINIMUM",
                f"Budget is below the per-day minimum: at least {minimum / 1_000_000:.2f} {customer.currency_code}"
                + (" for the whole flight." if field_name == "total_amount_micros" else " a day."),
                "update",
                field_name,
                budget_minimum=details,
            )
        if field_name == "total_amount_micros" and flight is not None:
            spent = self._flight_spend(customer, campaign, flight[0])
            if amount < spent:
                return error(
                    "range_error",
                    "TOO_LOW",
                    f"The total budget cannot be less than what the campaign already spent this flight "
                    f"({spent / 1_000_000:.2f} {customer.currency_code}).",
                    "update",
                    field_name,
                )
        return None, (update.resource_name, (field_name, budget.id, amount))

    def _flight_spend(self, customer: SandboxCustomer, campaign: Any, start: Any) -> int:
        first, last = self.state.data.metric_window(customer)
        day, spent = max(start, first), 0
        while day <= last:
            spent += daily_metrics(campaign.id, day, campaign.budget.spend_basis_micros).cost_micros
            day += timedelta(days=1)
        return spent

    # --- CampaignService / AdGroupService ------------------------------------------------------

    def _mutate_campaigns(self, call: _Call, request: Any) -> Any:
        customer = self._customer(call)
        data = self.state.data

        def check(index: int, operation: Any) -> tuple[ErrorSpec | None, Any]:
            return self._status_change(
                customer, index, operation, _CAMPAIGN_RESOURCE, "campaign_error", data.campaign,
                self.state.campaign_status,
            )  # fmt: skip

        return self._mutate(
            call,
            request,
            call.types.campaign_service.MutateCampaignsResponse,
            check,
            lambda change: self.state.set_campaign_status(*change),
        )

    def _mutate_ad_groups(self, call: _Call, request: Any) -> Any:
        customer = self._customer(call)
        data = self.state.data

        def check(index: int, operation: Any) -> tuple[ErrorSpec | None, Any]:
            return self._status_change(
                customer, index, operation, _AD_GROUP_RESOURCE, "ad_group_error", data.ad_group,
                self.state.ad_group_status,
            )  # fmt: skip

        return self._mutate(
            call,
            request,
            call.types.ad_group_service.MutateAdGroupsResponse,
            check,
            lambda change: self.state.set_ad_group_status(*change),
        )

    @staticmethod
    def _status_change(
        customer: SandboxCustomer,
        index: int,
        operation: Any,
        resource_pattern: re.Pattern[str],
        error_kind: str,
        lookup: Any,
        current_status: Any,
    ) -> tuple[ErrorSpec | None, tuple[str, tuple[int, str]] | None]:
        def error(kind: str, code: str, message: str, *path: str) -> tuple[ErrorSpec, None]:
            field_path = (("operations", index), *((p, None) for p in path))
            return ErrorSpec(kind, code, message, field_path), None

        if operation.WhichOneof("operation") != "update":
            return error("mutate_error", "MUTATE_NOT_ALLOWED", "The sandbox only updates the status.", "update")
        update = operation.update
        match = resource_pattern.match(update.resource_name)
        if not match:
            return error(
                "request_error", "RESOURCE_NAME_MALFORMED", "Malformed resource name.", "update", "resource_name"
            )
        target = lookup(customer.id, int(match.group(2))) if int(match.group(1)) == customer.id else None
        if target is None:
            return error("mutate_error", "RESOURCE_NOT_FOUND", "Resource was not found.", "update", "resource_name")
        paths = list(operation.update_mask.paths)
        if not paths:
            return error("field_mask_error", "FIELD_MASK_MISSING", "The update mask is missing.", "update_mask")
        unsupported = [p for p in paths if p not in ("status", "resource_name")]
        if unsupported:
            return error(
                "field_mask_error", "FIELD_NOT_FOUND", f"The sandbox cannot update {unsupported[0]!r}.", "update_mask"
            )
        if "status" not in paths:
            return None, None
        status = update.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[update.status].name
        if current_status(target) == "REMOVED":
            return error(
                "operation_access_denied_error",
                "OPERATION_NOT_PERMITTED_FOR_REMOVED_RESOURCE",
                "The operation is not permitted on a removed resource.",
                "update",
                "status",
            )
        if status not in _SETTABLE_STATUSES:
            return error(
                error_kind if error_kind == "campaign_error" else "request_error",
                "INVALID_STATUS_CHANGE" if error_kind == "campaign_error" else "INVALID_ENUM_VALUE",
                f"Status {status} cannot be set by an update; use ENABLED or PAUSED (remove with a remove operation).",
                "update",
                "status",
            )
        return None, (update.resource_name, (target.id, status))

    # --- ConversionUploadService ---------------------------------------------------------------

    def _upload_click_conversions(self, call: _Call, request: Any) -> Any:
        customer = self._customer(call)
        raw_request = type(request).pb(request)
        if len(raw_request.conversions) > MAX_CONVERSIONS_PER_REQUEST:
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [
                    ErrorSpec(
                        "conversion_upload_error",
                        "TOO_MANY_CONVERSIONS_IN_REQUEST",
                        f"At most {MAX_CONVERSIONS_PER_REQUEST} conversions can be uploaded in one request.",
                    )
                ],
            )
        if not raw_request.partial_failure:
            raise ApiFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                [ErrorSpec("partial_failure_error", "PARTIAL_FAILURE_MODE_REQUIRED", "partial_failure must be true.")],
            )
        response_class = call.types.conversion_upload.UploadClickConversionsResponse
        response = response_class.pb()()
        errors: list[ErrorSpec] = []
        seen_keys: set[tuple[int, int, str, float]] = set()
        seen_orders: set[tuple[int, int, str]] = set()
        # One lock across check-and-store: two concurrent uploads of the same click store it once.
        with self.state.lock:
            for index, conversion in enumerate(raw_request.conversions):
                result = response.results.add()
                outcome = self._check_conversion(customer, index, conversion, seen_keys, seen_orders)
                if isinstance(outcome, ErrorSpec):
                    errors.append(outcome)
                    continue
                stored, key = outcome
                seen_keys.add(key)
                if stored.order_id:
                    seen_orders.add((customer.id, stored.conversion_action_id, stored.order_id))
                if not raw_request.validate_only:
                    self.state.store_conversion(stored, key)
                    if conversion.gclid:
                        result.gclid = conversion.gclid
                    result.gbraid = conversion.gbraid
                    result.wbraid = conversion.wbraid
                    result.conversion_action = conversion.conversion_action
                    result.conversion_date_time = conversion.conversion_date_time
                    result.user_identifiers.extend(conversion.user_identifiers)
        if errors:
            response.partial_failure_error.CopyFrom(_partial_failure_status(call.types, errors, call.request_id))
        response.job_id = zlib.crc32(call.request_id.encode())
        return response_class.wrap(response)

    def _check_conversion(
        self,
        customer: SandboxCustomer,
        index: int,
        conversion: Any,
        seen_keys: set[tuple[int, int, str, float]],
        seen_orders: set[tuple[int, int, str]],
    ) -> ErrorSpec | tuple[StoredConversion, tuple[int, int, str, float]]:
        def error(kind: str, code: str, message: str, field_name: str) -> ErrorSpec:
            return ErrorSpec(kind, code, message, (("conversions", index), (field_name, None)))

        match = _CONVERSION_ACTION_RESOURCE.match(conversion.conversion_action)
        action = self.state.data.conversion_action(int(match.group(2))) if match else None
        if action is None or action.customer_id != customer.id:
            return error(
                "conversion_upload_error",
                "NO_CONVERSION_ACTION_FOUND",
                "The conversion action specified in the upload request cannot be found.",
                "conversion_action",
            )
        click_ids = [
            (name, getattr(conversion, name)) for name in ("gclid", "gbraid", "wbraid") if getattr(conversion, name)
        ]
        hashed_emails = tuple(u.hashed_email for u in conversion.user_identifiers if u.hashed_email)
        hashed_phones = tuple(u.hashed_phone_number for u in conversion.user_identifiers if u.hashed_phone_number)
        if len(click_ids) > 1:
            return error(
                "conversion_upload_error",
                "GBRAID_WBRAID_BOTH_SET",
                "Exactly one of gclid, gbraid and wbraid may be set.",
                click_ids[1][0],
            )
        if not click_ids and not (hashed_emails or hashed_phones):
            return error(
                "conversion_upload_error",
                "CLICK_NOT_FOUND",
                "The conversion has neither a click identifier nor user identifiers.",
                "gclid",
            )
        if click_ids:
            click_field, click_id = click_ids[0]
            if not _GCLID.match(click_id):
                code = {"gclid": "UNPARSEABLE_GCLID", "gbraid": "UNPARSEABLE_GBRAID", "wbraid": "UNPARSEABLE_WBRAID"}[
                    click_field
                ]
                return error("conversion_upload_error", code, f"The {click_field} could not be decoded.", click_field)
            if click_id.startswith(UNKNOWN_GCLID_PREFIX):
                return error(
                    "conversion_upload_error",
                    "CLICK_NOT_FOUND",
                    "The click associated with the given identifier was not found.",
                    click_field,
                )
        if len(conversion.user_identifiers) > 5 or not all(_SHA256_HEX.match(v) for v in hashed_emails + hashed_phones):
            return error(
                "conversion_upload_error",
                "INVALID_USER_IDENTIFIER",
                "User identifiers must be SHA-256 hex digests, at most five.",
                "user_identifiers",
            )
        if not click_ids:
            # Enhanced conversions for leads: no click, Google matches the person on the hashed
            # identifiers; the same person, action and time is the same conversion.
            click_field = "user_identifiers"
            click_id = IDENTIFIERS_KEY_PREFIX + ",".join(sorted(hashed_emails + hashed_phones))
        try:
            moment = datetime.strptime(conversion.conversion_date_time, "%Y-%m-%d %H:%M:%S%z")
        except ValueError:
            return error(
                "date_error",
                "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
                "conversion_date_time must look like 'yyyy-mm-dd hh:mm:ss+hh:mm'.",
                "conversion_date_time",
            )
        key = conversion_key(customer.id, action.id, click_id, moment)
        if self.state.has_conversion(key):
            return error(
                "conversion_upload_error",
                "CLICK_CONVERSION_ALREADY_EXISTS",
                "This click conversion was already uploaded (same click, action and time).",
                click_field,
            )
        if key in seen_keys:
            return error(
                "conversion_upload_error",
                "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
                "The request holds this click conversion twice.",
                click_field,
            )
        order_id = conversion.order_id
        if order_id and self.state.has_order_id(customer.id, action.id, order_id):
            return error(
                "conversion_upload_error", "ORDER_ID_ALREADY_IN_USE", "The order id was already used.", "order_id"
            )
        if order_id and (customer.id, action.id, order_id) in seen_orders:
            return error(
                "conversion_upload_error", "DUPLICATE_ORDER_ID", "The request holds this order id twice.", "order_id"
            )
        consent = conversion.consent
        stored = StoredConversion(
            customer_id=customer.id,
            conversion_action_id=action.id,
            gclid=conversion.gclid,
            gbraid=conversion.gbraid,
            wbraid=conversion.wbraid,
            conversion_date_time=conversion.conversion_date_time,
            conversion_value=conversion.conversion_value if conversion.HasField("conversion_value") else None,
            currency_code=conversion.currency_code,
            order_id=order_id,
            hashed_emails=hashed_emails,
            hashed_phone_numbers=hashed_phones,
            ad_user_data_consent=consent.DESCRIPTOR.fields_by_name["ad_user_data"]
            .enum_type.values_by_number[consent.ad_user_data]
            .name,
            ad_personalization_consent=consent.DESCRIPTOR.fields_by_name["ad_personalization"]
            .enum_type.values_by_number[consent.ad_personalization]
            .name,
        )
        return stored, key


def _allowed_logins(customer: SandboxCustomer) -> set[int]:
    """Who may act for a customer through login-customer-id: itself if a manager, its manager."""
    allowed = {customer.manager_id} if customer.manager_id else set()
    if customer.manager:
        allowed.add(customer.id)
    return allowed


def _auth_failure(code: str, message: str) -> ApiFailure:
    return ApiFailure(grpc.StatusCode.UNAUTHENTICATED, [ErrorSpec("authentication_error", code, message)])


def _page_token(offset: int, query_hash: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": query_hash}).encode()).decode()


def _read_page_token(token: str, query_hash: int) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if decoded["q"] != query_hash:
            raise ValueError("page token of another query")
        return int(decoded["o"])
    except (ValueError, KeyError, TypeError):
        raise ApiFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            [ErrorSpec("request_error", "INVALID_PAGE_TOKEN", "Page token is invalid.")],
        ) from None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# --- Start / stop -------------------------------------------------------------------------------


class GoogleSandbox:
    """A running emulator: the gRPC API on ``grpc_port``, OAuth on ``oauth_port``."""

    def __init__(
        self,
        host: str,
        server: grpc.Server,
        grpc_port: int,
        oauth: OAuthServer,
        ca_path: Path,
        state: GoogleSandboxState,
    ) -> None:
        self.host = host
        self.grpc_port = grpc_port
        self.oauth_port = oauth.port
        self.ca_path = ca_path
        self.state = state
        self._server = server
        self._oauth = oauth

    @property
    def endpoint(self) -> str:
        """The GoogleAdsClient endpoint ("host:port"); TLS name checked against the CA's cert."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def token_uri(self) -> str:
        return f"http://{self.host}:{self.oauth_port}/token"

    def stop(self, grace: float | None = None) -> None:
        # Bounded: a server whose serving thread died would never report that it stopped, and
        # whoever stops the emulator (a test session, `manage.py sandbox`) must not hang on it.
        if not self._server.stop(grace).wait(timeout=(grace or 0) + 10):
            logger.warning("the Google Ads sandbox did not confirm its shutdown within %ss", (grace or 0) + 10)
        self._oauth.stop()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def serve_until_signalled(self) -> None:
        """For a process of its own: print one JSON line (ports, CA path) for whoever started it,
        serve until SIGINT or SIGTERM, then stop."""
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        print(
            json.dumps({"grpc_port": self.grpc_port, "oauth_port": self.oauth_port, "ca_path": str(self.ca_path)}),
            flush=True,
        )
        stopped.wait()
        self.stop(grace=1)


def start(
    *,
    host: str = "127.0.0.1",
    grpc_port: int = 0,
    oauth_port: int = 0,
    cert_dir: Path,
    data: GoogleSandboxData | None = None,
    faults: Faults | None = None,
    versions: list[str] | None = None,
    max_workers: int = 16,
) -> GoogleSandbox:
    """Start the emulator in background threads. Port 0 picks a free port (see the result)."""
    state = GoogleSandboxState(data or GoogleSandboxData(), faults or Faults())
    tls = ensure_tls_files(Path(cert_dir))
    emulator = GoogleAdsEmulator(state)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="google-sandbox"),
        handlers=emulator.generic_handlers(versions or shipped_api_versions()),
        # A second sandbox on a fixed port must fail loudly, not share the port.
        options=[("grpc.so_reuseport", 0)],
    )
    tls_credentials = grpc.ssl_server_credentials([tls.server_key_and_chain()])
    bound_port = server.add_secure_port(f"{host}:{grpc_port}", tls_credentials)
    if not bound_port:
        raise OSError(f"Could not bind the Google Ads sandbox to {host}:{grpc_port}")
    oauth = OAuthServer(
        host,
        oauth_port,
        client_id=credentials.GOOGLE_CLIENT_ID,
        client_secret=credentials.GOOGLE_CLIENT_SECRET,
        refresh_token=credentials.GOOGLE_REFRESH_TOKEN,
        issue_token=state.issue_token,
        state=state,
        key_dir=Path(cert_dir),
    )
    server.start()
    oauth.start()
    logger.info("Google Ads sandbox on %s:%s (OAuth on %s)", host, bound_port, oauth.port)
    return GoogleSandbox(host, server, bound_port, oauth, tls.ca_path, state)
