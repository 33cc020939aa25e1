"""Database backends of the platform, and the prepared cursor of its hottest statements."""

from __future__ import annotations

from django.db import connections


def prepared_cursor(using: str = "default"):
    """A cursor whose statements PostgreSQL plans once per connection: for the few statements every
    request runs (the caller's grants, the campaign page, a webhook's INSERT), written once as SQL.

    Planning them again on every request cost more database CPU than running them (``make bench``).
    Any other backend (SQLite, Django's own PostgreSQL backend) gives its ordinary cursor.
    """
    connection = connections[using]
    make = getattr(connection, "prepared_cursor", None)
    return make() if make is not None else connection.cursor()
