"""The per-request health check: no round trip for a quiet connection, a new one for a closed one."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backend")


def _admin_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def _start_of_request() -> None:
    """What Django does when a request or task starts, then the request's first query."""
    connection.close_if_unusable_or_obsolete()
    connection.ensure_connection()
    connection.close_if_health_check_failed()


def _last_query_of(backend_pid: int) -> str:
    with _admin_connection() as admin:
        return admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [backend_pid]).fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_quiet_connection_is_reused_without_a_ping():
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    connection.close()  # a fresh connection: one opened earlier in the session may be past CONN_MAX_AGE
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last query of the previous request'")
    backend_pid = connection.connection.info.backend_pid

    _start_of_request()

    assert connection.health_check_done
    assert connection.connection.info.backend_pid == backend_pid
    assert _last_query_of(backend_pid) == "SELECT 'the last query of the previous request'"  # no SELECT 1


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it():
    connection.ensure_connection()
    backend_pid = connection.connection.info.backend_pid
    with _admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _backend_alive(backend_pid):
        time.sleep(0.05)

    _start_of_request()
    with connection.cursor() as cursor:  # would raise OperationalError on the ended connection
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)

    assert connection.connection.info.backend_pid != backend_pid


def _backend_alive(backend_pid: int) -> bool:
    with _admin_connection() as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend_pid]).fetchone()[0] > 0
