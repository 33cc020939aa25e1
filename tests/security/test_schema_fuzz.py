"""Schemathesis against our own OpenAPI schema, in process, with every built-in check.

Every operation of /api/schema/ is exercised with generated requests (a few per operation, so the
suite stays fast); ``ignored_auth`` additionally replays each authenticated request without and
with a wrong token. Any failure names the operation, the check and a curl line to reproduce it.
"""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig

from tests.campaigns.factories import AdAccountFactory, CampaignFactory, add_metrics

MAX_EXAMPLES_PER_OPERATION = 20


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go through the bare WSGI handler, whose request signals close a connection
    that is not in autocommit, i.e. the test's transaction on PostgreSQL. Django's own test
    client disconnects that handler the same way."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(staff_user) -> str:
    return str(RefreshToken.for_user(staff_user).access_token)


@pytest.fixture
def some_data(db) -> None:
    """A little of everything the read endpoints return, so responses have bodies to validate."""
    campaign = CampaignFactory(account=AdAccountFactory())
    add_metrics(campaign, days=3, end=dt.date.today())


# Rules no JSON Schema can state, so a schema-valid request may still get a 400: the referenced
# conversion action must exist in our database; a date range may cover at most 400 days. Only
# for these operations a 400 counts as a correct refusal of "positive" generated data.
_CROSS_FIELD_RULES = [
    {"include-path-regex": r"^/api/v1/conversions/(google|meta)$", "include-method": "POST"},
    {"include-path-regex": r"^/api(/v1)?/campaigns/?$", "include-method": "GET"},
    {"include-path-regex": r"^/api/v1/campaigns/\{campaign_id\}/metrics/$", "include-method": "GET"},
    {"include-path-regex": r"^/api/v1/summary/$", "include-method": "GET"},
]
_ACCEPTING_A_400 = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
# Unknown query parameters are ignored, as most HTTP APIs do (clients add tracking
# parameters); for these list operations schemathesis's negative generator produces
# requests whose only "violation" is such a parameter, so that check is off for them.
# Empty values and wrong types of the known parameters are refused with 400 everywhere.
_IGNORES_UNKNOWN_PARAMETERS = {
    "/api/v1/conversion-actions/",
    "/api/v1/conversions/",
    "/api/v1/leads/",
    "/api/v1/optimization/runs/",
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {**rule, "checks": {"positive_data_acceptance": {"expected-statuses": _ACCEPTING_A_400}}}
            for rule in _CROSS_FIELD_RULES
        ]
    }
)

# The published schema, fetched through the WSGI app itself: no server, no ALLOWED_HOSTS detour,
# and every request runs inside the test's database transaction. Loaded at import (pytest-django
# has configured Django by then); serving the schema touches no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # the same examples on every run: a CI failure reproduces locally
    derandomize=True,
)
def test_api_conforms_to_its_schema(case, staff_token, some_data):
    # The auth throttle counts per client address; generated requests are not a brute force.
    cache.clear()
    checks = CHECKS.get_all()
    if case.method == "GET" and case.path in _IGNORES_UNKNOWN_PARAMETERS:
        checks = [check for check in checks if check.__name__ != "negative_data_rejection"]
    case.call_and_validate(headers={"Authorization": f"Bearer {staff_token}"}, checks=checks)
