"""Accounts and config helpers shared by the Google adapter tests (importable by name,
unlike conftest)."""

from __future__ import annotations

from dataclasses import replace

from platforms.base import Account
from platforms.registry import GoogleAdsConfig
from platforms.sandbox import credentials
from platforms.sandbox.google import GoogleSandbox

US_ACCOUNT = Account(
    platform="google",
    external_id="1234567890",
    name="IBVI Demo US",
    currency_code="USD",
    time_zone="America/New_York",
    manager_customer_id=credentials.GOOGLE_MANAGER_ID,
)
UK_ACCOUNT = Account(
    platform="google",
    external_id="2345678901",
    name="IBVI Demo UK",
    currency_code="GBP",
    time_zone="Europe/London",
    manager_customer_id=credentials.GOOGLE_MANAGER_ID,
)
US_PURCHASE_ACTION = "880000001"
UK_PURCHASE_ACTION = "880000011"


def sandbox_config(sandbox: GoogleSandbox, **overrides: object) -> GoogleAdsConfig:
    config = GoogleAdsConfig(
        developer_token=credentials.GOOGLE_DEVELOPER_TOKEN,
        client_id=credentials.GOOGLE_CLIENT_ID,
        client_secret=credentials.GOOGLE_CLIENT_SECRET,
        refresh_token=credentials.GOOGLE_REFRESH_TOKEN,
        login_customer_id=credentials.GOOGLE_MANAGER_ID,
        api_version="v26",
        endpoint=sandbox.endpoint,
        token_uri=sandbox.token_uri,
        use_proto_plus=False,
    )
    return replace(config, **overrides)
