"""Google Ads API emulator: gRPC with TLS plus an OAuth token endpoint, for the official client.

    sandbox = start(cert_dir=Path("var/sandbox"))          # ephemeral ports
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(sandbox.ca_path)  # before any channel
    ... GoogleAdsConfig(endpoint=sandbox.endpoint, token_uri=sandbox.token_uri, ...)
    sandbox.stop()

Demo accounts: manager 1000000001 with clients 1234567890 (USD, America/New_York) and
2345678901 (GBP, Europe/London); conversion actions 880000001/880000002 and
880000011/880000012. Gclids starting with "UNKNOWN" are clicks Google never saw.
"""

from platforms.sandbox.google.data import MANAGER_CUSTOMER_ID, GoogleSandboxData
from platforms.sandbox.google.server import UNKNOWN_GCLID_PREFIX, GoogleSandbox, shipped_api_versions, start
from platforms.sandbox.google.state import GoogleSandboxState, StoredConversion

__all__ = [
    "MANAGER_CUSTOMER_ID",
    "UNKNOWN_GCLID_PREFIX",
    "GoogleSandbox",
    "GoogleSandboxData",
    "GoogleSandboxState",
    "StoredConversion",
    "shipped_api_versions",
    "start",
]
