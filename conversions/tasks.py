"""Thin Celery tasks of the conversions app."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.core.cache import cache

from conversions import enqueue, services

logger = logging.getLogger(__name__)

UPLOAD_LOCK_KEY = "conversions:upload-pending:lock"


@shared_task(name=enqueue.UPLOAD_PENDING, acks_late=True, ignore_result=True)
def upload_pending() -> dict[str, int]:
    """Beat, every minute, and after ingestion: upload what is due.

    Claims use SKIP LOCKED, so two runs at once would be safe; the lock only saves a second run
    the work of finding nothing. It expires with the upload lease, so a killed worker never
    blocks uploads for longer than that.
    """
    token = uuid.uuid4().hex
    if not cache.add(UPLOAD_LOCK_KEY, token, timeout=services.upload_lease_seconds()):
        return {"skipped": 1}
    try:
        return services.conversions_upload_pending().as_dict()
    finally:
        if cache.get(UPLOAD_LOCK_KEY) == token:
            cache.delete(UPLOAD_LOCK_KEY)
