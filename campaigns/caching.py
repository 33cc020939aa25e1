"""Values cached under the campaign cache generation, read in one round trip and written in one.

Every committed sync, change and account edit bumps the generation
(``services.campaign_cache_invalidate``). Each value is stored beside the generation it was
computed under, and a value of an older generation is a miss; so a request reads the
generation and every value it may need (its answer, the count of its filter, the accounts'
time zones) with one MGET, and writes what it had to compute with one pipeline. Keys holding
the generation in their name would need the generation first: two round trips where one does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

from campaigns import services

CACHE_SECONDS = 5 * 60

T = TypeVar("T")


def cache_key(scope: str, *parts: str) -> str:
    """A short key for ``parts`` (query strings can be long, and carry what a key may not)."""
    return f"api:{scope}:{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:32]}"


class GenerationCache:
    """The values of ``keys`` that are still current, read at once; ``save()`` writes the new ones."""

    def __init__(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        stored = cache.get_many([services.CACHE_GENERATION_KEY, *wanted])
        generation = stored.pop(services.CACHE_GENERATION_KEY, None)
        self.generation: int = int(generation) if generation is not None else services.campaign_cache_generation()
        self._current: dict[str, Any] = {
            key: value[1]
            for key, value in stored.items()
            if isinstance(value, tuple) and len(value) == 2 and value[0] == self.generation
        }
        self._computed: dict[str, tuple[int, Any]] = {}

    def get(self, key: str) -> Any:
        """The current value of ``key``, or None."""
        return self._current.get(key)

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        if key in self._current:
            return self._current[key]
        value = self._current[key] = compute()
        # Stored with the generation read before computing it: a sync committing meanwhile
        # bumps the generation, and this value is a miss for every later read.
        self._computed[key] = (self.generation, value)
        return value

    def save(self, timeout: int = CACHE_SECONDS) -> None:
        if self._computed:
            cache.set_many(self._computed, timeout)
            self._computed = {}


def _account_changed(**kwargs: Any) -> None:
    # An account added, removed or edited (its time zone, its currency, active or not) changes
    # the default date ranges and what the answers show.
    transaction.on_commit(services.campaign_cache_invalidate)


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    from campaigns.models import AdAccount

    post_save.connect(_account_changed, sender=AdAccount, dispatch_uid="campaigns.caching.account_saved")
    post_delete.connect(_account_changed, sender=AdAccount, dispatch_uid="campaigns.caching.account_deleted")
