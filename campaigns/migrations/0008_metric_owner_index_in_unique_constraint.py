"""Drop the metric tables' single-column owner indexes: the unique (owner, date) constraints lead
with the owner and serve every lookup by it, and the extra index slowed the sync's bulk writes.

Django's AlterField would drop and re-add the foreign key (a full-table validation under an
exclusive lock); only the index goes here, concurrently on PostgreSQL, and the state changes.
"""

import django.db.models.deletion
from django.db import migrations, models

OWNER_COLUMNS = (("campaigns_dailymetric", "campaign_id"), ("campaigns_adgroupdailymetric", "ad_group_id"))


def _owner_indexes(schema_editor, table, column):
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]
    ]


def drop_owner_indexes(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for table, column in OWNER_COLUMNS:
        for name in _owner_indexes(schema_editor, table, column):
            schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(name)}")


def create_owner_indexes(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for table, column in OWNER_COLUMNS:
        if not _owner_indexes(schema_editor, table, column):
            name = schema_editor.quote_name(f"{table}_{column}_owner")
            schema_editor.execute(f"CREATE INDEX{concurrently} {name} ON {table} ({column})")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("campaigns", "0007_account_data_from"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="adgroupdailymetric",
                    name="ad_group",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="daily_metrics",
                        to="campaigns.adgroup",
                    ),
                ),
                migrations.AlterField(
                    model_name="dailymetric",
                    name="campaign",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="daily_metrics",
                        to="campaigns.campaign",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_owner_indexes, create_owner_indexes)],
        ),
    ]
