"""The Graph API emulator on an ephemeral port and the real adapter pointed at it.

No Django database: the adapter is built from a MetaConfig directly, as the registry does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from platforms.base import Account
from platforms.meta import MetaPlatform
from platforms.registry import MetaConfig
from platforms.sandbox import credentials
from platforms.sandbox.faults import Faults
from platforms.sandbox.meta import DEMO_ACCOUNT_ID, MetaSandbox, start

# Small pages so that the demo data spans several of them.
LIST_PAGE_SIZE = 3
INSIGHTS_PAGE_SIZE = 7


@pytest.fixture
def sandbox() -> Iterator[MetaSandbox]:
    server = start(faults=Faults(seed=7))
    yield server
    server.stop()


@pytest.fixture
def make_config(sandbox: MetaSandbox) -> Callable[..., MetaConfig]:
    def build(**overrides: str) -> MetaConfig:
        values = {
            "app_id": credentials.META_APP_ID,
            "app_secret": credentials.META_APP_SECRET,
            "access_token": credentials.META_ACCESS_TOKEN,
            "business_id": credentials.META_BUSINESS_ID,
            "api_version": "v26.0",
            "graph_url": sandbox.url,
        }
        return MetaConfig(**{**values, **overrides})

    return build


@pytest.fixture
def pauses() -> list[float]:
    """What the adapter's throttle slept, instead of sleeping."""
    return []


@pytest.fixture
def make_platform(make_config: Callable[..., MetaConfig], pauses: list[float]) -> Callable[..., MetaPlatform]:
    def build(**overrides: str) -> MetaPlatform:
        return MetaPlatform(
            make_config(**overrides),
            timeout_seconds=5,
            list_page_size=LIST_PAGE_SIZE,
            insights_page_size=INSIGHTS_PAGE_SIZE,
            sleep=pauses.append,
        )

    return build


@pytest.fixture
def platform(make_platform: Callable[..., MetaPlatform]) -> MetaPlatform:
    return make_platform()


@pytest.fixture
def eur_account() -> Account:
    return Account("meta", DEMO_ACCOUNT_ID, "IBVI Sandbox - EUR", "EUR", "Europe/Berlin")


@pytest.fixture
def jpy_account(sandbox: MetaSandbox) -> Account:
    sandbox.state.add_account("300000000000002", "IBVI Sandbox - JPY", "JPY", "Asia/Tokyo", campaigns=4)
    return Account("meta", "300000000000002", "IBVI Sandbox - JPY", "JPY", "Asia/Tokyo")
