"""A worker survives losing Redis while it waits for work with a task in hand (Celery 5.7.0).

On a lost broker connection Celery 5.7.0's consumer calls ``connection.collect()`` and then
``connection.close()`` on the same kombu connection (5.6 only collected). ``collect()`` closes
the channels and drops the transport, but keeps the connection's default channel (the one the
tasks arrive on). When that channel was waiting in BRPOP with a task in hand, its close fails
at the pending reply, and the transport's own pass over its channels stops at the first other
channel that fails (the remote-control one), so it stays open. The ``close()`` that follows
closes it again, restores its unacknowledged message through the dropped transport and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'`` in ``_connparams``. That is
not a connection error, so the consumer does not reconnect: the worker logs "Unrecoverable
error" and exits. (Whether it happens depends on which socket the event loop reads first.)

The fix: once ``collect()`` has dropped the transport, the connection forgets its default
channel too, so the ``close()`` that follows has nothing left to close, as in Celery 5.6. The
unacknowledged messages stay in Redis's unacked hash (Redis was unreachable at that moment
anyway) and come back after the visibility timeout, as after a SIGKILL; the webhooks backlog
sweep re-enqueues lead work long before that.

Installed by adsplatform.celery; ``installed()`` says whether the running kombu carries it.
"""

from __future__ import annotations

import functools

from kombu import Connection

_MARK = "_ads_forgets_default_channel"


def install() -> None:
    original = Connection.collect
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def collect(self: Connection, socket_timeout: float | None = None) -> None:
        try:
            original(self, socket_timeout)
        finally:
            # Its transport is gone: a later close() must not close (and restore through) it again.
            self._default_channel = None

    setattr(collect, _MARK, True)
    Connection.collect = collect  # type: ignore[method-assign]  # the fix replaces kombu's method on purpose


def installed() -> bool:
    return bool(getattr(Connection.collect, _MARK, False))
