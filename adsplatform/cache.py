"""A Redis cache that fails soft: when Redis is away, reads miss and writes are dropped.

Nothing the platform caches is the only copy (answers, version tokens, throttles, task
de-duplication), so a Redis outage must cost speed, not requests: without this, every
request that touches the cache would answer 500 while Redis restarts. After a failure
the cache stays off for a few seconds (a circuit breaker), so requests don't each wait
for a connection attempt. `/readyz` still reports the outage: its write-then-read check
sees the miss.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adsplatform.resilience import CircuitBreaker

logger = logging.getLogger(__name__)

_OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
OPEN_SECONDS = 5.0


def _log_outage(exc: BaseException | None) -> None:
    logger.warning("cache unavailable; serving without it", extra={"error_class": type(exc).__name__})


class _OneClientPerPool(RedisCacheClient):
    """Django's client, building one ``redis.Redis`` per connection pool instead of one per call.

    Django's ``get_client`` makes a new ``redis.Redis`` for every cache operation; its constructor
    alone was a tenth of an uncached campaign list request's CPU (two cache calls; ``make bench``).
    A client holds nothing but its pool and redis-py shares one between threads, so one per pool
    serves every call (a forked process checks its pool's pid, as before).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _OneClientPerPool
        self._breaker = CircuitBreaker(OPEN_SECONDS, on_open=_log_outage)

    def _soft(self, operation, default, *args, **kwargs):
        if self._breaker.is_open():
            return default
        try:
            return operation(*args, **kwargs)
        except _OUTAGE_ERRORS as exc:
            self._breaker.trip(exc)
            return default

    def get(self, key, default=None, version=None):
        return self._soft(super().get, default, key, default, version)

    def get_many(self, keys, version=None):
        return self._soft(super().get_many, {}, keys, version)

    def has_key(self, key, version=None):
        return self._soft(super().has_key, False, key, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft(super().set, None, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft(super().set_many, list(data), data, timeout, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        # "Not added" is the safe answer: callers using add() as a lock skip this round.
        return self._soft(super().add, False, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft(super().touch, False, key, timeout, version)

    def delete(self, key, version=None):
        return self._soft(super().delete, False, key, version)

    def delete_many(self, keys, version=None):
        return self._soft(super().delete_many, None, keys, version)

    def incr(self, key, delta=1, version=None):
        if self._breaker.is_open():
            raise ValueError("cache unavailable")
        try:
            return super().incr(key, delta, version)
        except _OUTAGE_ERRORS as exc:
            self._breaker.trip(exc)
            raise ValueError("cache unavailable") from exc

    def clear(self):
        return self._soft(super().clear, False)
