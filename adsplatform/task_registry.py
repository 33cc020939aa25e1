"""A task by its registered name, for the apps' enqueue seams (``<app>/enqueue.py``).

A leaf every app may import (it imports only Celery): services queue work by name so that they
never import a ``tasks`` module, and still get the task's own options and eager mode. Outside a
worker the app has not imported its task modules yet (autodiscovery runs them when a worker
starts), so the first lookup of a name it does not know imports them, as a worker would."""

from __future__ import annotations

from celery import current_app
from celery.app.task import Task
from celery.exceptions import NotRegistered


def task_named(name: str) -> Task:
    try:
        return current_app.tasks[name]
    except NotRegistered:
        current_app.loader.import_default_modules()
        return current_app.tasks[name]
