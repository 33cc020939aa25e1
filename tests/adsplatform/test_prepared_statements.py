"""The hot statements' cursor: PostgreSQL parses and plans each statement once per connection."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from adsplatform.db import prepared_cursor

pytestmark = pytest.mark.django_db


def _prepared_like(pattern: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [pattern])
        return cursor.fetchone()[0]


@pytest.fixture
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")


def test_a_statement_run_three_times_is_prepared_once_and_answers_each_time(postgresql_only):
    answers = []
    for number in range(3):
        with prepared_cursor() as cursor:
            cursor.execute("SELECT %s::int + 1 AS prepared_probe", [number])
            answers.append(cursor.fetchone()[0])

    assert answers == [1, 2, 3]
    assert _prepared_like("SELECT $1::int + 1 AS prepared_probe%") == 1


def test_its_queries_are_logged_with_their_values_and_its_errors_are_djangos(postgresql_only):
    from django.db import DataError

    with CaptureQueriesContext(connection) as queries, prepared_cursor() as cursor:
        cursor.execute("SELECT %s::date AS logged_probe", ["2026-12-02"])
    assert queries.captured_queries[-1]["sql"] == "SELECT '2026-12-02'::date AS logged_probe"

    with pytest.raises(DataError), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::date AS bad_probe", ["not a date"])
