"""Connecting in the browser, end to end through Django's views, the sandboxes' sign-in pages and
the official SDKs: state and PKCE, account picking, the first backfill, health, reconnect,
disconnect, and that no credential is ever shown."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from adsplatform.celery import app as celery_app
from campaigns import backfill, services
from campaigns.access import ADMIN, account_access_grant
from campaigns.models import AdAccount, DailyMetric, SyncRun
from connections import services as connection_services
from connections.models import Connection
from optimization.models import Alert
from platforms.sandbox.meta import oauth as meta_oauth

pytestmark = pytest.mark.django_db(transaction=True)
HOST = "127.0.0.1"  # the sandboxes take loopback redirect URIs only


@pytest.fixture
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _fresh_logins(sandbox):
    yield
    sandbox.google.state.oauth_logins.reset()
    meta_oauth.logins_of(sandbox.meta.state).reset()


@pytest.fixture
def operator(db):
    user = get_user_model().objects.create_superuser("connector", "connector@example.com", "pw-connect-0123456789")
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    return client


def _consent(location: str, choice: dict[str, str]) -> str:
    """Open the platform's page the platform redirected to, choose, allow; the callback URL."""
    page = requests.get(location, timeout=5)
    assert page.status_code == 200, page.text[:300]
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    parts = urlsplit(location)
    answer = requests.post(
        f"{parts.scheme}://{parts.netloc}{action}",
        data={**form, **choice, "decision": "allow"},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302, answer.text[:300]
    return answer.headers["Location"]


def _connect(client: Client, platform: str, choice: dict[str, str], *, reconnect: int | None = None) -> Connection:
    start = client.get(f"/connect/{platform}/" + (f"?reconnect={reconnect}" if reconnect else ""))
    assert start.status_code == 302, start.content[:300]
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]
    if platform == "google":
        assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
        assert query["scope"] == ["https://www.googleapis.com/auth/adwords"]
    else:
        assert query["scope"] == ["ads_read,ads_management,business_management"]
    callback = urlsplit(_consent(start["Location"], choice))
    assert callback.path == f"/connect/{platform}/callback"
    back = client.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 302, back.content[:500]
    match = re.match(r"/connect/(\d+)/accounts/", back["Location"])
    assert match, back["Location"]
    return Connection.objects.get(pk=int(match.group(1)))


def _pick(client: Client, connection: Connection, *external_ids: str) -> None:
    page = client.get(f"/connect/{connection.pk}/accounts/")
    assert page.status_code == 200
    for external_id in external_ids:
        assert external_id.encode() in page.content
    answer = client.post(f"/connect/{connection.pk}/accounts/", {"account": list(external_ids)})
    assert answer.status_code == 302, answer.content[:500]


def _run_backfill() -> None:
    """What beat and the workers do, here and now: chunk after chunk until every account is done."""
    for _ in range(20):
        if not backfill.backfill_enqueue_due():
            return
    raise AssertionError("the backfill did not finish")


def test_google_login_connects_picks_backfills_and_a_second_login_sits_beside(operator, sandbox, eager_tasks):
    ops = _connect(operator, "google", {"login": "ops@ibvi.example"})
    agency = _connect(operator, "google", {"login": "agency@ibvi.example"})
    assert ops.kind == agency.kind == "oauth" and ops.status == "active"
    assert ops.refresh_token != agency.refresh_token
    _pick(operator, agency, "3456789012")
    _pick(operator, ops, "1234567890")
    _run_backfill()
    account = AdAccount.objects.get(platform="google", external_id="3456789012")
    assert account.connection == agency and account.manager_customer_id == "1000000002"
    days = set(DailyMetric.objects.filter(campaign__account=account).values_list("date", flat=True))
    today = services.account_today(account)
    assert min(days) <= today - timezone.timedelta(days=88)  # 90 days asked; Google reports up to yesterday
    runs = SyncRun.objects.filter(account=account)
    assert runs.filter(trigger="backfill").count() == 3 and {r.status for r in runs} == {"succeeded"}
    progress = backfill.backfill_status([account])[account.pk]
    assert progress.done and progress.days_read == 90
    # The other login cannot reach this account: its adapter is its own.
    assert "3456789012" not in operator.get(f"/connect/{ops.pk}/accounts/").content.decode()


def test_state_and_pkce_are_checked(operator, sandbox):
    start = operator.get("/connect/google/")
    callback = urlsplit(_consent(start["Location"], {"login": "ops@ibvi.example"}))
    forged = parse_qs(callback.query)
    refused = operator.get(f"{callback.path}?state=forged&code={forged['code'][0]}")
    assert refused.status_code == 400 and b"could not be verified" in refused.content
    # A callback from another browser session is refused too: the state lives in the session.
    stranger = Client(HTTP_HOST=HOST)
    stranger.force_login(get_user_model().objects.get(username="connector"))
    assert stranger.get(f"{callback.path}?{callback.query}").status_code == 400
    # Cancelled at the platform: nothing stored.
    start = operator.get("/connect/meta/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    cancelled = operator.get(f"/connect/meta/callback?state={state}&error=access_denied")
    assert cancelled.status_code == 400 and b"did not grant access" in cancelled.content
    assert not Connection.objects.exclude(kind="environment").exists()


def test_meta_login_gets_a_long_lived_token_and_its_business_accounts(operator, sandbox, eager_tasks):
    connection = _connect(operator, "meta", {"person": "10000000000002"})
    assert connection.kind == "oauth" and connection.external_user_id == "10000000000002"
    assert connection.expires_at > timezone.now() + timezone.timedelta(days=55)
    page = operator.get(f"/connect/{connection.pk}/accounts/").content.decode()
    assert "300000000000002" in page and "300000000000003" in page and "300000000000001" not in page
    _pick(operator, connection, "300000000000002", "300000000000003")
    _run_backfill()
    for external_id in ("300000000000002", "300000000000003"):
        account = AdAccount.objects.get(platform="meta", external_id=external_id)
        assert account.connection == connection
        assert DailyMetric.objects.filter(campaign__account=account).dates("date", "day").count() >= 80


def test_revoked_google_grant_flags_pauses_alerts_and_reconnect_resumes(operator, sandbox, eager_tasks):
    connection = _connect(operator, "google", {"login": "agency@ibvi.example"})
    _pick(operator, connection, "3456789012")
    _run_backfill()
    account = AdAccount.objects.get(external_id="3456789012")
    revoked = requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/revoke", data={"token": connection.refresh_token}, timeout=5
    )
    assert revoked.status_code == 200
    run = services.sync_run_create(account=account, enqueue=False)
    with pytest.raises(Exception):  # noqa: B017 - the sync fails as an auth error
        services.campaign_sync(run=run)
    connection.refresh_from_db()
    account.refresh_from_db()
    assert connection.status == "needs_reconnect" and "invalid_grant" in connection.status_reason
    assert account.needs_attention and account not in services.due_accounts()
    alert = Alert.objects.get(kind="connection", subject=f"connection:{connection.pk}", resolved_at__isnull=True)
    assert alert.severity == "critical" and "Reconnect" in alert.message
    change = operator.get(f"/admin/connections/connection/{connection.pk}/change/").content.decode()
    assert f"/connect/google/?reconnect={connection.pk}" in change
    again = _connect(operator, "google", {"login": "agency@ibvi.example"}, reconnect=connection.pk)
    assert again.pk == connection.pk and again.status == "active" and again.credential_version == 2
    account.refresh_from_db()
    assert not account.needs_attention
    assert not Alert.objects.filter(subject=f"connection:{connection.pk}", resolved_at__isnull=True).exists()
    assert services.campaign_sync(run=services.sync_run_create(account=account, enqueue=False)).status == "succeeded"


def test_meta_revocation_flags_on_the_health_check(operator, sandbox):
    connection = _connect(operator, "meta", {"person": "10000000000001"})
    requests.delete(
        f"{sandbox.meta.url}/v26.0/me/permissions", params={"access_token": connection.access_token}, timeout=5
    )
    report = connection_services.connections_check_all()
    connection.refresh_from_db()
    assert report.flagged == 1 and connection.status == "needs_reconnect"
    assert Alert.objects.filter(subject=f"connection:{connection.pk}", resolved_at__isnull=True).exists()


def test_meta_user_token_is_exchanged_again_before_it_expires_and_flagged_once_expired(operator, sandbox):
    connection = _connect(operator, "meta", {"person": "10000000000001"})
    old_token = connection.access_token
    Connection.objects.filter(pk=connection.pk).update(expires_at=timezone.now() + timezone.timedelta(days=3))
    report = connection_services.connections_check_all()
    connection.refresh_from_db()
    assert report.reexchanged == 1 and connection.access_token != old_token
    assert connection.expires_at > timezone.now() + timezone.timedelta(days=55) and connection.status == "active"
    Connection.objects.filter(pk=connection.pk).update(expires_at=timezone.now() - timezone.timedelta(minutes=1))
    connection_services.connections_check_all()
    connection.refresh_from_db()
    assert connection.status == "needs_reconnect" and "expired" in connection.status_reason


def test_disconnect_revokes_at_the_platform_and_keeps_history(operator, sandbox, eager_tasks):
    connection = _connect(operator, "google", {"login": "agency@ibvi.example"})
    refresh_token = connection.refresh_token
    _pick(operator, connection, "3456789012")
    _run_backfill()
    rows = DailyMetric.objects.count()
    answer = operator.post(f"/connect/{connection.pk}/disconnect/")
    assert answer.status_code == 302
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.refresh_token == ""
    account = AdAccount.objects.get(external_id="3456789012")
    assert not account.is_active and DailyMetric.objects.count() == rows
    refused = requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "sandbox-client-id",
            "client_secret": "sandbox-client-secret",
        },
        timeout=5,
    )
    assert refused.json()["error"] == "invalid_grant"


def test_pasted_service_account_and_system_user_are_validated_first(operator, sandbox, eager_tasks):
    bad = operator.post("/connect/google/service-account/", {"key": '{"type": "authorized_user"}'})
    assert bad.status_code == 400 and b"not a service account key" in bad.content
    key = (sandbox.cert_dir / "google-service-account.json").read_text()
    forged = {**json.loads(key), "private_key_id": "f" * 40}
    refused = operator.post("/connect/google/service-account/", {"key": json.dumps(forged)})
    assert refused.status_code == 400 and b"Google refused the key" in refused.content
    ok = operator.post("/connect/google/service-account/", {"key": key})
    assert ok.status_code == 302
    google = Connection.objects.get(kind="service_account")
    _pick(operator, google, "3456789012")
    assert AdAccount.objects.get(external_id="3456789012").connection == google
    # Disconnecting forgets the key here and names the one to delete in Google Cloud, where it stays valid.
    assert operator.post(f"/connect/{google.pk}/disconnect/").status_code == 302
    google.refresh_from_db()
    assert google.status == "revoked" and google.service_account_key == ""
    assert (
        f"delete key {json.loads(key)['private_key_id']} of {json.loads(key)['client_email']}" in google.status_reason
    )

    wrong = operator.post("/connect/meta/system-user/", {"token": "not-a-token"})
    assert wrong.status_code == 400 and b"not-a-token" not in wrong.content
    ok = operator.post(
        "/connect/meta/system-user/", {"token": meta_oauth.AGENCY_SYSTEM_USER_TOKEN, "business_id": "200000000000002"}
    )
    assert ok.status_code == 302
    meta = Connection.objects.get(kind="system_user")
    assert meta.expires_at is None
    page = operator.get(f"/connect/{meta.pk}/accounts/").content.decode()
    assert "300000000000002" in page and "300000000000003" in page


def test_tokens_never_appear_in_admin_api_or_error_pages(operator, sandbox, client_with_role):
    google = _connect(operator, "google", {"login": "agency@ibvi.example"})
    meta = _connect(operator, "meta", {"person": "10000000000002"})
    secrets = [google.refresh_token, meta.access_token]
    assert all(len(s) > 16 for s in secrets)
    stored = Connection.objects.filter(pk=google.pk).values_list("refresh_token", flat=True)
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT refresh_token, access_token FROM connections_connection WHERE id IN (%s, %s)", [google.pk, meta.pk]
        )
        raw = " ".join(v for row in cursor.fetchall() for v in row)
    assert all(s not in raw for s in secrets) and "fernet:" in raw and list(stored) == [google.refresh_token]
    pages = [
        operator.get("/admin/connections/connection/"),
        operator.get(f"/admin/connections/connection/{google.pk}/change/"),
        operator.get(f"/admin/connections/connection/{meta.pk}/change/"),
        operator.get(f"/connect/{meta.pk}/accounts/"),
        operator.get("/connect/google/callback?state=nope&code=" + secrets[0]),
        operator.get("/admin/campaigns/adaccount/"),
    ]
    admin_client = client_with_role("admin")
    pages.append(admin_client.get("/api/v1/connections/"))
    pages.append(admin_client.get("/api/schema/"))
    for page in pages:
        body = page.content.decode()
        assert all(s not in body for s in secrets), page


def test_connections_api_contract(operator, sandbox, client_with_role):
    connection = _connect(operator, "meta", {"person": "10000000000002"})
    _pick(operator, connection, "300000000000002")
    account = AdAccount.objects.get(external_id="300000000000002")
    superuser = client_with_role("admin")
    rows = superuser.get("/api/v1/connections/").json()
    row = next(r for r in rows if r["id"] == connection.pk)
    assert set(row) == {"id", "platform", "kind", "status", "expires_at", "accounts"}
    assert (row["platform"], row["kind"], row["status"], row["accounts"]) == ("meta", "oauth", "active", [account.pk])
    assert row["expires_at"]
    # An admin of one account sees that account's connection, with that account only.
    own = client_with_role("admin", accounts=[account])
    assert [(r["id"], r["accounts"]) for r in own.get("/api/v1/connections/").json()] == [(connection.pk, [account.pk])]
    assert client_with_role("advertiser").get("/api/v1/connections/").status_code == 403
    schema = superuser.get("/api/schema/?format=json").json()
    listed = schema["paths"]["/api/v1/connections/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array"
    fields = schema["components"]["schemas"]["Connection"]["properties"]
    assert set(fields) == {"id", "platform", "kind", "status", "expires_at", "accounts"}


def test_only_admins_of_every_account_may_connect(sandbox, db):
    account = AdAccount.objects.create(platform="google", external_id="1234567890", name="x", currency_code="USD")
    person = get_user_model().objects.create_user("half-admin", password="pw-connect-0123456789", is_staff=True)
    account_access_grant(user=person, account=account, role=ADMIN)
    client = Client(HTTP_HOST=HOST)
    client.force_login(person)
    for path in ("/connect/google/", "/connect/meta/", f"/connect/{account.connection_id}/accounts/"):
        assert client.get(path).status_code == 403
    assert client.post(f"/connect/{account.connection_id}/disconnect/").status_code == 403
    assert Client().get("/connect/google/").status_code == 302  # anonymous: to the login page


def test_existing_and_discovered_accounts_belong_to_the_environment_connection(sandbox):
    accounts = services.account_discover()
    assert accounts and {a.connection.kind for a in accounts} == {"environment"}
    assert Connection.objects.filter(kind="environment").count() == 2


def test_refused_credentials_stop_the_uploads_of_their_connection_only(operator, sandbox, client_with_role):
    from datetime import UTC, datetime

    from conversions import services as conversion_services
    from conversions.models import Conversion, ConversionAction

    revoked_login = _connect(operator, "google", {"login": "agency@ibvi.example"})
    _pick(operator, revoked_login, "3456789012")  # picked first: its uploads are tried first
    working_login = _connect(operator, "google", {"login": "ops@ibvi.example"})
    _pick(operator, working_login, "1234567890")
    agency_account = AdAccount.objects.get(external_id="3456789012")
    ConversionAction.objects.create(account=agency_account, external_id="880000009", name="Agency purchase")
    ConversionAction.objects.get_or_create(
        account=AdAccount.objects.get(external_id="1234567890"), external_id="880000001", defaults={"name": "Purchase"}
    )
    when = datetime.now(UTC).replace(microsecond=0).isoformat()
    items = [
        {"gclid": f"Cj0KCQ-{action}", "conversion_action": action, "conversion_date_time": when, "order_id": action}
        for action in ("880000009", "880000001")
    ]
    posted = client_with_role("advertiser").post("/api/v1/conversions/google", {"conversions": items}, format="json")
    assert posted.status_code == 202, posted.content
    requests.post(
        f"http://127.0.0.1:{sandbox.google.oauth_port}/revoke", data={"token": revoked_login.refresh_token}, timeout=5
    ).raise_for_status()

    summary = conversion_services.conversions_upload_pending()
    assert summary.outcomes["auth_error"] == 1
    statuses = dict(Conversion.objects.values_list("account__external_id", "status"))
    # The other login's account uploads; the revoked one's waits (no attempt spent) for a reconnect.
    assert statuses == {"1234567890": "uploaded", "3456789012": "pending"}
    assert Conversion.objects.get(account=agency_account).attempts == 0
