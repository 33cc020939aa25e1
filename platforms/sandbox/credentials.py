"""The credentials the sandbox accepts: the one place they are defined.

Anything else is refused like a bad token. The product does not import this module: it reads
its sandbox credentials from settings (``ADS_SANDBOX_GOOGLE_*``, ``ADS_SANDBOX_META_*``), whose
defaults mirror these values.
"""

from __future__ import annotations

GOOGLE_CLIENT_ID = "sandbox-client-id"
GOOGLE_CLIENT_SECRET = "sandbox-client-secret"
GOOGLE_REFRESH_TOKEN = "sandbox-refresh-token"
GOOGLE_DEVELOPER_TOKEN = "sandbox-developer-token"
GOOGLE_MANAGER_ID = "1000000001"
META_ACCESS_TOKEN = "sandbox-meta-access-token"
META_APP_ID = "100000000000001"
META_APP_SECRET = "sandbox-meta-app-secret"
META_BUSINESS_ID = "200000000000001"
