"""The platform's settings with named optimisations taken out, to measure what each one buys.

``BENCH_STOCK`` lists what to replace by Django's stock behaviour (comma-separated):

- ``receiver_middleware``: drop ``MachineReceiverMiddleware`` (receivers go through the whole
  middleware chain and URL resolution);
- ``db_backend``: Django's own PostgreSQL backend instead of ``adsplatform.db.postgresql``
  (its ``CONN_HEALTH_CHECKS`` ping is a ``SELECT 1`` round trip per request).

``bench/bench_webhooks.py`` serves each variant beside the platform in the same alternating
rounds; the code of each optimisation cites the figure.
"""

import os

from adsplatform.settings import *  # noqa: F403
from adsplatform.settings import DATABASES, MIDDLEWARE

_stock = {name.strip() for name in os.environ.get("BENCH_STOCK", "").split(",") if name.strip()}
if "receiver_middleware" in _stock:
    MIDDLEWARE = [name for name in MIDDLEWARE if not name.endswith(".MachineReceiverMiddleware")]
if "db_backend" in _stock:
    DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
