"""The Celery app, its beat schedule, and the request id carried into tasks."""

from __future__ import annotations

import os

from celery import Celery, signals
from celery.schedules import crontab

from adsplatform import logging as ads_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")

app = Celery("adsplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every retry delay and countdown in the product is capped by this, and it stays below
# the Redis broker's visibility timeout (one hour) so nothing is redelivered early.
MAX_RETRY_DELAY_SECONDS = 15 * 60

# Each app adds its jobs here; the schedule is the product's, not a deployment detail.
app.conf.beat_schedule = {}


def add_periodic(name: str, task: str, schedule, **options) -> None:
    app.conf.beat_schedule[name] = {"task": task, "schedule": schedule, "options": options}


__all__ = ("MAX_RETRY_DELAY_SECONDS", "add_periodic", "app", "crontab")


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict | None = None, **_: object) -> None:
    request_id = ads_logging.current_request_id()
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


@signals.task_prerun.connect
def _adopt_request_id(task=None, **_: object) -> None:
    if task is None:
        return
    # A worker merges custom message headers into the request; apply() keeps them apart.
    request_id = getattr(task.request, "request_id", None) or (task.request.headers or {}).get("request_id")
    ads_logging.set_request_id(request_id or f"task-{task.request.id}")


@signals.task_postrun.connect
def _forget_request_id(**_: object) -> None:
    ads_logging.set_request_id(None)
