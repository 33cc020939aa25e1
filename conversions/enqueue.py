"""The one seam through which conversions services hand work to a worker: tasks by name.

Looking the task up by name (adsplatform.task_registry) keeps the import graph one-way (``tasks``
imports ``services``; services import only this module) while keeping the task's own options
and eager mode; the names are the tasks' registered names (``conversions/tasks.py``)."""

from __future__ import annotations

from adsplatform.task_registry import task_named

UPLOAD_PENDING = "conversions.upload_pending"


def upload_pending() -> None:
    """Queue an upload run; raises what the broker raises (callers decide whether that matters)."""
    task_named(UPLOAD_PENDING).apply_async()
