"""`python manage.py rotate_field_encryption`: rewrite every encrypted value with the newest key.

Run it after putting a new key first in FIELD_ENCRYPTION_KEYS; once it has run, the old key may
be dropped. Values stored before encryption was introduced are encrypted on the way.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from adsplatform import secret_fields


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the newest FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        for model in apps.get_models():
            names = [f.name for f in model._meta.concrete_fields if isinstance(f, secret_fields.EncryptedCharField)]
            if not names:
                continue
            with transaction.atomic():
                rewritten = _rotate_model(model, names)
            self.stdout.write(f"{model._meta.label}: {rewritten} row(s) rewritten ({', '.join(names)}).")


def _rotate_model(model, names: list[str]) -> int:
    """Rewrite the stored tokens in SQL: through the ORM a value would come back decrypted."""
    table = model._meta.db_table
    columns = [model._meta.get_field(name).column for name in names]
    pk_column = model._meta.pk.column
    quote = connection.ops.quote_name
    rewritten = 0
    with connection.cursor() as cursor:
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        cursor.execute(f"SELECT {quote(pk_column)}, {', '.join(map(quote, columns))} FROM {quote(table)}{lock}")  # noqa: S608
        rows = cursor.fetchall()
        for pk, *values in rows:
            rotated = [secret_fields.rotate(value) if value else value for value in values]
            if rotated != values:
                assignments = ", ".join(f"{quote(column)} = %s" for column in columns)
                cursor.execute(
                    f"UPDATE {quote(table)} SET {assignments} WHERE {quote(pk_column)} = %s",  # noqa: S608
                    [*rotated, pk],
                )
                rewritten += 1
    return rewritten
