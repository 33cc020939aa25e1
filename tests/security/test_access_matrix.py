"""Who may do what: every URL pattern and every admin action, for every kind of caller, on their
own account and on another. A new endpoint or action without an entry here fails the suite.

Callers: anonymous, a service key, and a viewer, an advertiser and an admin of the "own" accounts
(one Google, one Meta), and a superuser. The "other" accounts are nobody's but the superuser's.
Write requests carry bodies that fail validation *after* the access check where possible
(a negative budget, an unknown stage), so an allowed caller gets 400/409 and nothing is written,
while a refused one gets 403 (visible, role too low) or 404 (not visible).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from campaigns.access import ADMIN, ADVERTISER, VIEWER, account_access_grant
from campaigns.models import AdAccount, AdGroup, Campaign
from conversions import services as conversion_services
from conversions.models import Conversion, ConversionAction
from optimization.models import Alert, OptimizationRun
from tests.campaigns.factories import AdAccountFactory, CampaignFactory
from webhooks.models import Lead, WebhookSource

pytestmark = pytest.mark.django_db

CALLERS = ("anonymous", "service_key", VIEWER, ADVERTISER, ADMIN, "superuser")


@dataclass
class Side:
    google: AdAccount
    meta: AdAccount
    campaign: Campaign
    ad_group: AdGroup
    google_action: ConversionAction
    meta_action: ConversionAction
    lead: Lead
    run: OptimizationRun
    conversion: Conversion
    alert: Alert


def _side(label: str, source: WebhookSource) -> Side:
    google = AdAccountFactory(platform="google", name=f"{label} Google")
    meta = AdAccountFactory(platform="meta", name=f"{label} Meta")
    campaign = CampaignFactory(account=google, name=f"{label} campaign")
    ad_group = AdGroup.objects.create(
        campaign=campaign,
        account=google,
        platform="google",
        external_id=f"9{campaign.external_id}",
        name=f"{label} ad group",
    )
    google_action = ConversionAction.objects.create(account=google, external_id=f"7{google.pk:05d}", name="Purchase")
    meta_action = ConversionAction.objects.create(account=meta, external_id=f"8{meta.pk:05d}", name="Pixel")
    lead = Lead.objects.create(source=source, campaign=campaign, full_name=f"{label} lead", received_at=timezone.now())
    run = OptimizationRun.objects.create(
        campaign=campaign, new_budget_micros=1_000_000, reason="r", source="api", status="applied"
    )
    outcome = conversion_services.conversions_ingest_google(items=[_google_item(google_action)], source="test")
    alert = Alert.objects.create(
        kind=Alert.Kind.BUDGET_OVERSPEND,
        subject=f"campaign:{campaign.pk}",
        subject_label=campaign.name,
        account=google,
        value=1.5,
        threshold=1.1,
        message="over",
        opened_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    return Side(google, meta, campaign, ad_group, google_action, meta_action, lead, run, outcome.conversions[0], alert)


def _google_item(action: ConversionAction) -> dict[str, Any]:
    return {
        "gclid": f"gclid-{action.pk}-{timezone.now().timestamp()}",
        "conversion_action": action.external_id,
        "conversion_date_time": timezone.now() - dt.timedelta(hours=1),
        "conversion_value": None,
        "currency_code": "",
        "order_id": f"order-{action.pk}-{timezone.now().timestamp()}",
        "user": {},
        "consent": {},
    }


@dataclass
class World:
    own: Side
    other: Side
    clients: dict[str, APIClient]
    users: dict[str, Any]


@pytest.fixture
def world(db) -> World:
    source = WebhookSource.objects.create(name="zapier", secret="matrix-secret-0123456789")
    own, other = _side("Own", source), _side("Other", source)
    users: dict[str, Any] = {}
    clients: dict[str, APIClient] = {"anonymous": APIClient()}
    _key, raw_key = conversion_services.service_api_key_create(name="matrix")
    clients["service_key"] = APIClient(HTTP_X_SERVICE_AUTH=raw_key)
    User = get_user_model()
    for role in (VIEWER, ADVERTISER, ADMIN):
        user = User.objects.create_user(f"matrix-{role}", password="pw-matrix-0123456789", is_staff=True)
        for account in (own.google, own.meta):
            account_access_grant(user=user, account=account, role=role)
        users[role] = user
    users["superuser"] = User.objects.create_superuser("matrix-root", password="pw-matrix-0123456789")
    for name, user in users.items():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        clients[name] = client
    return World(own, other, clients, users)


# --- The API ------------------------------------------------------------------------------------

# (method, path for a side, body for a side) per URL name. Statuses per caller: (own, other).
Request = tuple[str, Callable[[Side], str], Callable[[Side], Any] | None]
JWT_READ = {"anonymous": 401, "service_key": 401, VIEWER: 200, ADVERTISER: 200, ADMIN: 200, "superuser": 200}
JWT_DETAIL = {k: (v, 404 if k in (VIEWER, ADVERTISER, ADMIN) else v) for k, v in JWT_READ.items()}


def _same(statuses: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {caller: (status, status) for caller, status in statuses.items()}


def _write(allowed: int, *, service_key: int = 401) -> dict[str, tuple[int, int]]:
    return {
        "anonymous": (401, 401),
        "service_key": (service_key, service_key),
        VIEWER: (403, 404),
        ADVERTISER: (allowed, 404),
        ADMIN: (allowed, 404),
        "superuser": (allowed, allowed),
    }


PUBLIC = _same(dict.fromkeys(CALLERS, 200))
NO_SECRET = _same(dict.fromkeys(CALLERS, 401))  # machine receivers: a JWT does not open them
BROWSER_ONLY = _same(dict.fromkeys(CALLERS, 302))  # staff session pages: to the admin login
MATRIX: dict[str, tuple[Request, dict[str, tuple[int, int]]]] = {
    "healthz": (("get", lambda s: "/healthz", None), PUBLIC),
    "readyz": (("get", lambda s: "/readyz", None), PUBLIC),
    "metrics": (("get", lambda s: "/metrics", None), PUBLIC),
    "schema": (("get", lambda s: "/api/schema/", None), PUBLIC),
    "swagger-ui": (("get", lambda s: "/api/docs/", None), PUBLIC),
    "redoc": (("get", lambda s: "/api/redoc/", None), PUBLIC),
    "token_obtain_pair": (
        # A new username each time: the same one would be locked out after a few failures (a 429).
        ("post", lambda s: "/api/v1/auth/token/", lambda s: {"username": f"nobody-{uuid.uuid4()}", "password": "x"}),
        _same(dict.fromkeys(CALLERS, 401)),
    ),
    "token_refresh": (
        ("post", lambda s: "/api/v1/auth/token/refresh/", lambda s: {"refresh": "not-a-token"}),
        _same(dict.fromkeys(CALLERS, 401)),
    ),
    "token_blacklist": (
        ("post", lambda s: "/api/v1/auth/token/blacklist/", lambda s: {"refresh": "not-a-token"}),
        _same(dict.fromkeys(CALLERS, 401)),
    ),
    "campaign-list": (("get", lambda s: "/api/v1/campaigns/", None), _same(JWT_READ)),
    "campaign-list-alias": (("get", lambda s: "/api/campaigns", None), _same(JWT_READ)),
    "campaign-detail": (("get", lambda s: f"/api/v1/campaigns/{s.campaign.pk}/", None), JWT_DETAIL),
    "campaign-metrics": (("get", lambda s: f"/api/v1/campaigns/{s.campaign.pk}/metrics/", None), JWT_DETAIL),
    "summary": (("get", lambda s: "/api/v1/summary/", None), _same(JWT_READ)),
    "account-list": (("get", lambda s: "/api/v1/accounts/", None), _same(JWT_READ)),
    "account-sync": (("post", lambda s: f"/api/v1/accounts/{s.google.pk}/sync/", None), _write(202)),
    "sync-run-list": (("get", lambda s: "/api/v1/sync-runs/", None), _same(JWT_READ)),
    "me": (("get", lambda s: "/api/v1/me/", None), _same(JWT_READ)),
    "conversions-google": (
        ("post", lambda s: "/api/v1/conversions/google", lambda s: _google_body(s.google_action)),
        _write(202, service_key=202),
    ),
    "conversions-google-alias": (
        ("post", lambda s: "/v1/conversions/google", lambda s: _google_body(s.google_action)),
        _write(202, service_key=202),
    ),
    "conversions-meta": (
        ("post", lambda s: "/api/v1/conversions/meta", lambda s: _meta_body(s.meta_action)),
        _write(202, service_key=202),
    ),
    "conversion-list": (("get", lambda s: "/api/v1/conversions/", None), _same(JWT_READ)),
    "conversion-action-list": (
        ("get", lambda s: "/api/v1/conversion-actions/", None),
        _same({**JWT_READ, "service_key": 200}),  # conversion_actions:read, on every account
    ),
    "webhook-zapier": (("post", lambda s: "/api/v1/webhooks/zapier", lambda s: {"lead_id": "x"}), NO_SECRET),
    "webhook-google-lead-form": (
        ("post", lambda s: "/api/v1/webhooks/google-lead-form", lambda s: {"lead_id": "x", "google_key": "no"}),
        NO_SECRET,
    ),
    "lead-list": (("get", lambda s: "/api/v1/leads/", None), _same(JWT_READ)),
    "lead-detail": (("patch", lambda s: f"/api/v1/leads/{s.lead.pk}/", lambda s: {"stage": "maybe"}), _write(400)),
    "campaign-budget": (
        (
            "post",
            lambda s: f"/api/v1/campaigns/{s.campaign.pk}/budget/",
            lambda s: {"daily_budget_micros": -1, "reason": "matrix"},
        ),
        _write(400),
    ),
    "campaign-status": (
        (
            "post",
            lambda s: f"/api/v1/campaigns/{s.campaign.pk}/status/",
            lambda s: {"status": "archived", "reason": "matrix"},
        ),
        _write(400),
    ),
    "ad-group-list": (("get", lambda s: "/api/v1/ad-groups/", None), _same(JWT_READ)),
    "ad-group-budget": (
        (
            "post",
            lambda s: f"/api/v1/ad-groups/{s.ad_group.pk}/budget/",
            lambda s: {"daily_budget_micros": -1, "reason": "matrix"},
        ),
        _write(400),
    ),
    "ad-group-status": (
        (
            "post",
            lambda s: f"/api/v1/ad-groups/{s.ad_group.pk}/status/",
            lambda s: {"status": "archived", "reason": "matrix"},
        ),
        _write(400),
    ),
    "optimization-run-list": (("get", lambda s: "/api/v1/optimization/runs/", None), _same(JWT_READ)),
    "optimization-run-apply": (
        ("post", lambda s: f"/api/v1/optimization/runs/{s.run.pk}/apply/", None),
        _write(409),  # allowed, but the run is not a proposal
    ),
    "alert-list": (("get", lambda s: "/api/v1/alerts/", None), _same(JWT_READ)),
    "connection-list": (
        ("get", lambda s: "/api/v1/connections/", None),
        _same({**JWT_READ, VIEWER: 403, ADVERTISER: 403}),  # the admin role (own accounts' connections)
    ),
    # The browser flows take a staff session, never a token: every API caller goes to the login page.
    **{
        name: ((method, path, None), BROWSER_ONLY)
        for name, method, path in (
            ("connect-google", "get", lambda s: "/connect/google/"),
            ("connect-google-callback", "get", lambda s: "/connect/google/callback?state=x&code=y"),
            ("connect-google-service-account", "get", lambda s: "/connect/google/service-account/"),
            ("connect-meta", "get", lambda s: "/connect/meta/"),
            ("connect-meta-callback", "get", lambda s: "/connect/meta/callback?state=x&code=y"),
            ("connect-meta-system-user", "get", lambda s: "/connect/meta/system-user/"),
            ("connect-accounts", "get", lambda s: f"/connect/{s.google.connection_id}/accounts/"),
            ("connect-disconnect", "post", lambda s: f"/connect/{s.google.connection_id}/disconnect/"),
        )
    },
}

# What each list shows: the ids of one side's rows in a list answer.
LIST_IDS: dict[str, Callable[[Side], str]] = {
    "campaign-list": lambda s: str(s.campaign.pk),
    "campaign-list-alias": lambda s: str(s.campaign.pk),
    "ad-group-list": lambda s: s.ad_group.name,
    "account-list": lambda s: s.google.external_id,
    "conversion-list": lambda s: str(s.conversion.pk),
    "conversion-action-list": lambda s: s.google_action.external_id,
    "lead-list": lambda s: s.lead.full_name,
    "optimization-run-list": lambda s: f'"id":{s.run.pk},',
    "alert-list": lambda s: s.campaign.name,
    "me": lambda s: s.google.external_id,
}


def _google_body(action: ConversionAction) -> dict[str, Any]:
    item = {k: v for k, v in _google_item(action).items() if v not in (None, "", {})}
    return {**item, "conversion_date_time": item["conversion_date_time"].isoformat(), "user": {"email": "a@b.co"}}


def _meta_body(action: ConversionAction) -> dict[str, Any]:
    return {
        "event_name": "Purchase",
        "event_time": int(timezone.now().timestamp()) - 60,
        "event_id": f"evt-{action.pk}-{timezone.now().timestamp()}",
        "action_source": "website",
        "event_source_url": "https://shop.example.com/",
        "conversion_action": action.external_id,
        "user": {"email": "a@b.co", "client_user_agent": "UA"},
    }


def _url_names(patterns, prefix: str = "") -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern).startswith("admin/"):
                continue  # the admin's own pages: covered through its actions and screens below
            yield from _url_names(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name


def test_every_url_pattern_has_an_entry():
    missing = [f"{path} ({name})" for path, name in _url_names(get_resolver().url_patterns) if name not in MATRIX]
    assert not missing, f"Add these to MATRIX with the answer for each caller: {missing}"


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_caller_gets_the_answer_the_matrix_holds(world, name):
    (method, path, body), expected = MATRIX[name]
    for caller in CALLERS:
        for which, side in (("own", world.own), ("other", world.other)):
            data = body(side) if body else None
            response = getattr(world.clients[caller], method)(path(side), data, format="json")
            want = expected[caller][0 if which == "own" else 1]
            assert response.status_code == want, (caller, which, response.status_code, response.content[:300])
            if response.status_code in (403, 404) and path(side).startswith("/api/"):
                assert set(response.json()["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("name", sorted(LIST_IDS))
def test_lists_show_the_callers_accounts_only(world, name):
    (_method, path, _body), _ = MATRIX[name]
    marker = LIST_IDS[name]
    for caller in (VIEWER, ADVERTISER, ADMIN, "superuser"):
        text = world.clients[caller].get(path(world.own)).content.decode()
        assert marker(world.own) in text, (caller, name)
        assert (marker(world.other) in text) == (caller == "superuser"), (caller, name)


def test_me_names_each_visible_account_with_the_role(world):
    body = world.clients[ADVERTISER].get("/api/v1/me/").json()
    assert body["username"] == "matrix-advertiser" and body["is_superuser"] is False
    assert sorted((a["platform"], a["external_id"], a["role"]) for a in body["accounts"]) == sorted(
        [("google", world.own.google.external_id, "advertiser"), ("meta", world.own.meta.external_id, "advertiser")]
    )


# --- The admin's actions ------------------------------------------------------------------------

# The lowest role that may run each action (on rows of an account where it holds that role).
ACTION_ROLE = {
    ("campaigns.adaccount", "sync_now"): ADVERTISER,
    ("campaigns.adaccount", "clear_attention"): ADVERTISER,
    ("campaigns.campaign", "change_daily_budget"): ADVERTISER,
    ("campaigns.campaign", "pause_selected"): ADVERTISER,
    ("campaigns.campaign", "enable_selected"): ADVERTISER,
    ("campaigns.adgroup", "pause_selected"): ADVERTISER,
    ("campaigns.adgroup", "enable_selected"): ADVERTISER,
    ("conversions.conversion", "retry_failed"): ADVERTISER,
    ("conversions.conversion", "export_csv"): VIEWER,
    ("optimization.optimizationrun", "approve_proposals"): ADVERTISER,
    ("optimization.optimizationrun", "reject_proposals"): ADVERTISER,
    ("webhooks.lead", "mark_contacted"): ADVERTISER,
    ("webhooks.lead", "mark_qualified"): ADVERTISER,
    ("webhooks.lead", "mark_won"): ADVERTISER,
    ("webhooks.lead", "mark_lost"): ADVERTISER,
    ("webhooks.lead", "retry_failed_deliveries"): ADVERTISER,
    ("webhooks.webhookevent", "replay"): "every-account advertiser",
    ("campaigns.accountaccess", "delete_selected"): ADMIN,
    ("optimization.accountbudgetsettings", "delete_selected"): ADMIN,
    ("conversions.conversionaction", "delete_selected"): ADMIN,
    ("conversions.serviceapikey", "delete_selected"): "every-account admin",
    ("webhooks.webhooksource", "delete_selected"): "every-account admin",
    ("webhooks.routingrule", "delete_selected"): "every-account admin",
    ("webhooks.destination", "delete_selected"): "every-account admin",
    ("webhooks.destination", "rotate_signing_secret"): "every-account admin",
    # People and lockouts: Django's and django-axes' own screens, for superusers.
    ("auth.user", "delete_selected"): "superuser",
    ("auth.group", "delete_selected"): "superuser",
    ("axes.accessattempt", "delete_selected"): "superuser",
    ("axes.accessattempt", "cleanup_expired_attempts"): "superuser",
    ("axes.accesslog", "delete_selected"): "superuser",
    ("axes.accessfailurelog", "delete_selected"): "superuser",
    # Connections reach accounts for everyone: connecting and disconnecting is for admins of all.
    ("connections.connection", "check_health"): "every-account admin",
    ("connections.connection", "disconnect"): "every-account admin",
}
RANK = {VIEWER: 1, ADVERTISER: 2, ADMIN: 3}


def _admin_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _registered_actions(user) -> Iterator[tuple[tuple[str, str], Any]]:
    request = _admin_request(user)
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_permission(request):
            continue  # the screen is closed to them, and with it its actions
        for action in model_admin.get_actions(request):
            yield (model._meta.label_lower, action), model_admin


def test_every_admin_action_has_an_entry(world):
    actions = {key for key, _ in _registered_actions(world.users["superuser"])}
    assert actions - set(ACTION_ROLE) == set(), "Add the new admin actions to ACTION_ROLE"


@pytest.mark.parametrize("role", [VIEWER, ADVERTISER, ADMIN])
def test_admin_actions_are_offered_to_the_roles_that_may_run_them(world, role):
    offered = {key for key, _ in _registered_actions(world.users[role])}
    for key, needed in ACTION_ROLE.items():
        allowed = needed in RANK and RANK[role] >= RANK[needed]  # every-account ones: none of these roles
        assert (key in offered) == allowed, (role, key, needed)


@pytest.mark.parametrize("role", [VIEWER, ADVERTISER, ADMIN])
def test_admin_lists_hold_only_the_users_accounts(world, role):
    request = _admin_request(world.users[role])
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_permission(request):
            continue
        rows = model_admin.get_queryset(request)
        for other_row in (
            world.other.google,
            world.other.campaign,
            world.other.ad_group,
            world.other.lead,
            world.other.run,
            world.other.conversion,
            world.other.alert,
            world.other.google_action,
        ):
            if isinstance(other_row, model):
                assert not rows.filter(pk=other_row.pk).exists(), (role, model._meta.label)
