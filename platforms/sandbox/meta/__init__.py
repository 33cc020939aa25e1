"""The Graph API emulator the official facebook-business SDK talks to, unpatched.

sandbox = start()                      # ephemeral port
MetaConfig(..., graph_url=sandbox.url)  # the adapter points FacebookSession.GRAPH here
sandbox.state.event_count("Purchase", "order-1")
sandbox.stop()
"""

from platforms.sandbox.meta.data import (
    DEMO_ACCOUNT_ID,
    DEMO_BUSINESS_ID,
    DEMO_PIXEL_ID,
    MetaSandboxData,
    SandboxAccount,
    SandboxAdSet,
    SandboxCampaign,
    daily_insight,
)
from platforms.sandbox.meta.server import GraphError, MetaSandbox, MetaSandboxState, start

__all__ = [
    "DEMO_ACCOUNT_ID",
    "DEMO_BUSINESS_ID",
    "DEMO_PIXEL_ID",
    "GraphError",
    "MetaSandbox",
    "MetaSandboxData",
    "MetaSandboxState",
    "SandboxAccount",
    "SandboxAdSet",
    "SandboxCampaign",
    "daily_insight",
    "start",
]
