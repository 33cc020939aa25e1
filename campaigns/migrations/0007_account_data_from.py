"""Each account's first synced day, kept on the account (the sync keeps it from now on): from its
successful runs, or, for rows written before runs recorded their window, its earliest metric."""

from django.db import migrations, models
from django.db.models import Min


def fill_data_from(apps, schema_editor):
    AdAccount = apps.get_model("campaigns", "AdAccount")
    SyncRun = apps.get_model("campaigns", "SyncRun")
    DailyMetric = apps.get_model("campaigns", "DailyMetric")
    by_runs = dict(
        SyncRun.objects.filter(status="succeeded", date_from__isnull=False)
        .values("account_id")
        .annotate(first=Min("date_from"))
        .values_list("account_id", "first")
    )
    by_rows = dict(
        DailyMetric.objects.values("campaign__account_id")
        .annotate(first=Min("date"))
        .values_list("campaign__account_id", "first")
    )
    for account_id in set(by_runs) | set(by_rows):
        first = min(day for day in (by_runs.get(account_id), by_rows.get(account_id)) if day is not None)
        AdAccount.objects.filter(pk=account_id).update(data_from=first)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0006_account_connection_and_backfill_days")]

    operations = [
        migrations.AddField(
            model_name="adaccount",
            name="data_from",
            field=models.DateField(
                blank=True,
                editable=False,
                help_text="First day with synced metrics; earlier days have no data.",
                null=True,
            ),
        ),
        migrations.RunPython(fill_data_from, migrations.RunPython.noop),
    ]
