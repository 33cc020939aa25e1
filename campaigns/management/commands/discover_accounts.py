"""`python manage.py discover_accounts`: create or update every account the credentials reach."""

from django.core.management.base import BaseCommand, CommandError

from campaigns import services
from platforms.base import PlatformError


class Command(BaseCommand):
    help = "Create or update an AdAccount for every account the configured credentials reach."

    def add_arguments(self, parser):
        parser.add_argument(
            "--platform",
            choices=("google", "meta"),
            action="append",
            help="Only this platform (repeatable). Default: both.",
        )

    def handle(self, *args, platform=None, **options):
        try:
            accounts = services.account_discover(platforms=platform or ("google", "meta"))
        except PlatformError as exc:
            raise CommandError(f"Could not list accounts: {exc}") from exc
        for account in accounts:
            self.stdout.write(
                f"{account.platform:6} {account.external_id:>16}  {account.currency_code}  "
                f"{account.time_zone:20} {account.name}"
            )
        self.stdout.write(self.style.SUCCESS(f"{len(accounts)} accounts up to date."))
