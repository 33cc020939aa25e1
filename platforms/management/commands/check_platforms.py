"""`python manage.py check_platforms`: can the configured credentials reach each account?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from platforms.base import AuthError, PlatformError, TransientError
from platforms.registry import get_platform

VERDICTS = {AuthError: "credentials problem", TransientError: "platform unreachable"}


def verdict(exc: PlatformError) -> str:
    for error_class, text in VERDICTS.items():
        if isinstance(exc, error_class):
            return text
    return "refused"


class Command(BaseCommand):
    help = "Check credentials and reachability per platform and per account: ok / credentials problem / unreachable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--platform", choices=("google", "meta"), action="append")

    def handle(self, *args: Any, platform: list[str] | None = None, **options: Any) -> None:
        problems = 0
        for name in platform or ("google", "meta"):
            adapter = get_platform(name)
            try:
                adapter.check_credentials()
                accounts = [a for a in adapter.list_accounts() if not a.is_manager]
            except PlatformError as exc:
                problems += 1
                self.stdout.write(self.style.ERROR(f"{name:6} {verdict(exc)}: {exc}"))
                continue
            self.stdout.write(self.style.SUCCESS(f"{name:6} ok: credentials work, {len(accounts)} account(s) reached"))
            for account in accounts:
                try:
                    next(iter(adapter.list_campaigns(account)), None)
                except PlatformError as exc:
                    problems += 1
                    self.stdout.write(self.style.ERROR(f"  {account.external_id:>16} {verdict(exc)}: {exc}"))
                else:
                    self.stdout.write(f"  {account.external_id:>16} ok  {account.name} ({account.currency_code})")
        if problems:
            raise CommandError(f"{problems} problem(s) found.")
