"""Django's PostgreSQL backend with a health check that costs no round trip when nothing changed.

``CONN_HEALTH_CHECKS`` makes Django send ``SELECT 1`` before the first query of every request
and task, so a persistent connection the server closed (a restart, a failover, an idle
timeout) is replaced instead of failing that request. On the webhook receiver that ping is a
second round trip next to the one INSERT the request needs.

Here the check first asks the kernel: an idle connection in its normal state has nothing to
read. When the server ends a connection it sends an error message or FIN (or the connection
resets), and the socket turns readable; only then, or when the driver already knows the
connection is broken, is the ``SELECT 1`` sent. A path that drops packets without a word
(no FIN, no RST) is not seen this way; the first query then fails after the TCP timeout,
which is what the ping would have met too.

Kept for what ``make bench`` measures (``bench/bench_webhooks.py`` serves the platform with
Django's own backend too, ``bench/stock_settings.py``, in the same alternating rounds): 1,287
webhooks/s with this backend against 988/s with Django's (+30%, median of 3 rounds, 32 clients,
2 workers on 2 shared cores). That figure holds both of its differences: the health check and
the prepared cursor, which Django's backend does not have. The health check alone measured
between 5% slower and 18% faster over this and earlier rounds (within the machine's noise); the
prepared INSERT alone 971 against 922/s (median of 4 alternating rounds).
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        # The prepared cursor holds its statement with $1 placeholders: the logged query (DEBUG,
        # tests counting queries) is composed from sql and params, as Django does for server binding.
        if not isinstance(cursor, psycopg.ClientCursor):
            try:
                return self.compose_sql(sql, params)
            except psycopg.errors.DataError:
                return None
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            # Both attributes are Django's (4.1+); django-stubs do not declare them.
            and self.health_check_enabled  # type: ignore[attr-defined]
            and not self.health_check_done  # type: ignore[has-type]
            and not self.pool
            and self._idle_socket_is_quiet()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _idle_socket_is_quiet(self) -> bool:
        """True when the connection looks open and the server has sent nothing since the last query."""
        connection = self.connection
        if connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def prepared_cursor(self):
        """A cursor binding its parameters on the server, so PostgreSQL parses and plans each of its
        statements once per connection (``adsplatform.db.prepared_cursor``).

        Django's cursors bind on the client: every statement is sent as new text and planned
        again, and psycopg never prepares those. This cursor is psycopg's own (server-side binding)
        inside Django's wrapper, so errors, transactions and query logging are Django's as for any
        cursor; the connection prepares what it runs (``prepare_threshold`` in settings).
        """
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            return self._prepare_cursor(psycopg.Cursor(self.connection))
