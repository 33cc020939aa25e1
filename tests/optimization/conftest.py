"""Fixtures of the optimization tests: both emulators on free ports, adapters pointed at them,
synced campaigns, and Celery running tasks in-process so a push happens inside the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adsplatform.celery import app as celery_app
from campaigns.models import AdAccount, Campaign, SyncRun
from campaigns.services import account_discover, campaign_sync, sync_run_create
from platforms.registry import SANDBOX_CA_FILENAME, reset_platforms
from platforms.sandbox import google as google_sandbox
from platforms.sandbox import meta as meta_sandbox
from platforms.sandbox.faults import Faults
from platforms.sandbox.google.certs import ensure_tls_files


@dataclass
class Sandboxes:
    google: google_sandbox.GoogleSandbox
    meta: meta_sandbox.MetaSandbox
    cert_dir: Path

    def reset_faults(self) -> None:
        self.google.state.faults.reset()
        self.meta.state.faults.reset()


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """Google Ads (gRPC + TLS + OAuth) and Graph API emulators for the whole session.

    gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH once, at the process's first secure channel:
    a sandbox CA another suite already trusted is reused, otherwise a fresh one is made here.
    """
    trusted = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "")
    if trusted and Path(trusted).name == SANDBOX_CA_FILENAME:
        cert_dir = Path(trusted).parent
    else:
        cert_dir = tmp_path_factory.mktemp("optimization-sandbox-tls")
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(ensure_tls_files(cert_dir).ca_path)
    google = google_sandbox.start(host="127.0.0.1", cert_dir=cert_dir, faults=Faults(seed=7))
    meta = meta_sandbox.start(host="127.0.0.1", faults=Faults(seed=7))
    yield Sandboxes(google=google, meta=meta, cert_dir=cert_dir)
    google.stop()
    meta.stop()


@pytest.fixture
def sandbox(sandboxes: Sandboxes, settings) -> Iterator[Sandboxes]:
    """Settings pointing both adapters at the emulators; faults cleared before and after."""
    settings.ADS_SANDBOX = True
    settings.ADS_SANDBOX_HOST = "127.0.0.1"
    settings.ADS_SANDBOX_GOOGLE_PORT = sandboxes.google.grpc_port
    settings.ADS_SANDBOX_OAUTH_PORT = sandboxes.google.oauth_port
    settings.ADS_SANDBOX_META_PORT = sandboxes.meta.port
    settings.ADS_SANDBOX_DIR = sandboxes.cert_dir
    sandboxes.reset_faults()
    reset_platforms()
    yield sandboxes
    sandboxes.reset_faults()
    reset_platforms()


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in the calling thread, as soon as they are sent (after commit)."""
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous
    # Eager sends still borrow a broker connection, which leaves a pool on the app; forget
    # it (without closing what kombu may hand out again) so a later test that closes the
    # app's pool does not close one that other tests publish through.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def sync(account: AdAccount) -> SyncRun:
    """A full sync of one account, in-process, as the worker would run it."""
    return campaign_sync(run=sync_run_create(account=account, trigger=SyncRun.Trigger.MANUAL, enqueue=False))


@pytest.fixture
def synced_accounts(db, sandbox: Sandboxes) -> dict[str, AdAccount]:
    """Every sandbox account discovered and synced: real campaigns, budgets and metrics."""
    accounts = {account.platform + ":" + account.currency_code: account for account in account_discover()}
    for account in accounts.values():
        sync(account)
    return accounts


@pytest.fixture
def google_account(synced_accounts: dict[str, AdAccount]) -> AdAccount:
    return synced_accounts["google:USD"]


@pytest.fixture
def meta_account(synced_accounts: dict[str, AdAccount]) -> AdAccount:
    return next(account for key, account in synced_accounts.items() if key.startswith("meta:"))


def own_budget_campaign(account: AdAccount) -> Campaign:
    """An enabled campaign with its own (unshared) campaign-level daily budget."""
    return (
        Campaign.objects.filter(account=account, status="enabled", budget_is_shared=False, daily_budget_micros__gt=0)
        .order_by("external_id")
        .first()
    )
