"""Scrape-time collectors that read the database, contributed by each app.

Counters incremented in code live in each app's ``metrics.py`` module; gauges that
must be right whichever process did the work (sync lag, oldest pending row) are read
from the database when Prometheus scrapes. An app lists its collectors in
``SCRAPE_COLLECTORS`` in its own ``metrics`` module.
"""

from __future__ import annotations

import importlib
import logging

from django.apps import apps

logger = logging.getLogger(__name__)

_APPS_WITH_METRICS = ("campaigns", "conversions", "webhooks", "optimization", "connections")


def database_collectors() -> list:
    collectors: list[object] = []
    for label in _APPS_WITH_METRICS:
        if not apps.is_installed(label):
            continue
        try:
            module = importlib.import_module(f"{label}.metrics")
        except ModuleNotFoundError as exc:
            if exc.name != f"{label}.metrics":
                raise
            continue
        collectors.extend(collector() for collector in getattr(module, "SCRAPE_COLLECTORS", ()))
    return collectors
