"""The webhook app's fixtures (sources with known secrets, an in-memory broker), shared here so the
forgery tests attack exactly the set-up the webhook tests prove works."""

from tests.webhooks.conftest import (  # noqa: F401 - imported fixtures are registered by name
    _fresh_memory_caches,
    google_source,
    memory_broker,
    relay_source,
)
