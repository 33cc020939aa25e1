"""Every ad account belongs to a connection: existing accounts to their platform's environment
connection (the credentials in settings, which is what reached them until now)."""

import django.db.models.deletion
from django.db import migrations, models


def attach_to_environment(apps, schema_editor):
    AdAccount = apps.get_model("campaigns", "AdAccount")
    Connection = apps.get_model("connections", "Connection")
    labels = {"google": "Environment: GOOGLE_ADS_* settings", "meta": "Environment: META_* settings"}
    platforms = AdAccount.objects.filter(connection__isnull=True).values_list("platform", flat=True).distinct()
    for platform in sorted(set(platforms)):
        connection, _ = Connection.objects.get_or_create(
            platform=platform, kind="environment", defaults={"label": labels.get(platform, "Environment")}
        )
        AdAccount.objects.filter(platform=platform, connection__isnull=True).update(connection=connection)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0005_ad_groups_and_lifetime_budgets"),
        ("connections", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="adaccount",
            name="connection",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="accounts",
                to="connections.connection",
            ),
        ),
        migrations.AddField(
            model_name="adaccount",
            name="initial_backfill_days",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Days of metrics the first backfill reads; empty: INITIAL_BACKFILL_DAYS.",
                null=True,
            ),
        ),
        migrations.RunPython(attach_to_environment, migrations.RunPython.noop),
    ]
