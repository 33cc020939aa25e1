"""The one seam through which optimization services hand work to a worker: tasks by registered name.

Looking the task up by name (adsplatform.task_registry) keeps the import graph one-way (``tasks`` imports the
services; services import only this module) while keeping each task's own options and eager
mode. The names are the ones ``optimization/tasks.py`` registers."""

from __future__ import annotations

import logging
from typing import Any

from adsplatform.task_registry import task_named

logger = logging.getLogger(__name__)

PUSH_BUDGET_CHANGE = "optimization.push_budget_change"
WORKER_CANARY = "optimization.worker_canary"
EVALUATE_ACCOUNT_ALERTS = "optimization.evaluate_account_alerts"


def send(task_name: str, *args: Any, **options: Any) -> None:
    """Queue ``task_name``; raises what the broker raises."""
    task_named(task_name).apply_async(args, **options)


def send_quietly(task_name: str, *args: Any) -> bool:
    """Queue ``task_name``; a broker outage must not fail the caller (the sweeper re-sends what it
    leaves behind), so a refusal is logged and answered False."""
    try:
        send(task_name, *args)
    except Exception:
        logger.warning("could not enqueue %s; the sweeper will retry", task_name, exc_info=True)
        return False
    return True
