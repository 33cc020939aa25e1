"""The one seam through which campaigns services hand work to a worker: tasks by registered name.

Looking the task up by name (adsplatform.task_registry) keeps the import graph one-way (``tasks`` imports
``services``; services import only this module) while keeping the task's own options and eager
mode. The names are the ones ``campaigns/tasks.py`` registers."""

from __future__ import annotations

import logging

from adsplatform.task_registry import task_named

logger = logging.getLogger(__name__)

SYNC_ACCOUNT = "campaigns.sync_account"


def sync_account(run_id: int, *, priority: int | None = None) -> bool:
    """Queue the sync run; False when the broker refused (never raises: the run stays queued and
    the scheduler's sweep, ``campaigns.sync_due_accounts``, sends it again)."""
    options = {} if priority is None else {"priority": priority}
    try:
        task_named(SYNC_ACCOUNT).apply_async((run_id,), **options)
    except Exception:
        logger.warning(
            "could not enqueue the sync run; the sweep will retry", exc_info=True, extra={"sync_run_id": run_id}
        )
        return False
    return True
