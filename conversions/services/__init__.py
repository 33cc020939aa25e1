"""Writes and workflows of the conversions app, a package by concern (callers import the package):

- ``ingestion``: hash every personal identifier before anything is stored; store a batch whole or
  not at all; a repeat creates nothing.
- ``uploads``: claim due rows and commit the claim before the network call, so a worker that dies
  mid-call leaves rows "uploading" with a lease; the next run resends them with the same
  order_id / event_id and the platform dedupes: nothing lost, nothing counted twice.
- ``service_keys``: server-to-server keys, stored as hashes, with scopes.
- ``actions``: the conversion actions conversions are posted to.
- ``common``: limits and settings they share.

Work for a worker is queued through ``conversions.enqueue`` (task names, no import of tasks), so
``tasks`` imports services and never the other way round.
"""

from conversions.services.actions import conversion_action_discover, conversion_action_ensure
from conversions.services.common import (
    MAX_BATCH,
    META_MAX_EVENT_AGE,
    retry_base_seconds,
    upload_lease_seconds,
    upload_max_attempts,
)
from conversions.services.ingestion import (
    IdempotencyKeyReused,
    IngestOutcome,
    IngestValidationError,
    ItemError,
    conversions_ingest_google,
    conversions_ingest_meta,
    conversions_request_upload,
)
from conversions.services.service_keys import (
    service_api_key_authenticate,
    service_api_key_create,
    service_api_key_ensure,
    service_api_key_hash,
)
from conversions.services.uploads import (
    UploadSummary,
    conversions_expire_stale,
    conversions_reclaim_stale_claims,
    conversions_retry,
    conversions_upload_pending,
)

__all__ = (
    "MAX_BATCH",
    "META_MAX_EVENT_AGE",
    "IdempotencyKeyReused",
    "IngestOutcome",
    "IngestValidationError",
    "ItemError",
    "UploadSummary",
    "conversion_action_discover",
    "conversion_action_ensure",
    "conversions_expire_stale",
    "conversions_ingest_google",
    "conversions_ingest_meta",
    "conversions_reclaim_stale_claims",
    "conversions_request_upload",
    "conversions_retry",
    "conversions_upload_pending",
    "retry_base_seconds",
    "service_api_key_authenticate",
    "service_api_key_create",
    "service_api_key_ensure",
    "service_api_key_hash",
    "upload_lease_seconds",
    "upload_max_attempts",
)
