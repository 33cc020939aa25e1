"""`python manage.py show_platforms`: each account's campaigns and yesterday's metrics, read
through the official SDKs (against the sandbox when ADS_SANDBOX=1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from platforms.base import MICROS_PER_UNIT, PlatformError
from platforms.registry import get_platform


def _money(micros: int | None, currency: str) -> str:
    return "—" if micros is None else f"{micros / MICROS_PER_UNIT:,.2f} {currency}"


class Command(BaseCommand):
    help = "Print every reachable account's campaigns with budgets and yesterday's metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--platform", choices=("google", "meta"), action="append")

    def handle(self, *args: Any, platform: list[str] | None = None, **options: Any) -> None:
        for name in platform or ("google", "meta"):
            adapter = get_platform(name)
            try:
                accounts = [a for a in adapter.list_accounts() if not a.is_manager]
                for account in accounts:
                    # "Yesterday" in the account's own time zone, as the platform dates metrics.
                    yesterday = timezone.now().astimezone(ZoneInfo(account.time_zone)).date() - timedelta(days=1)
                    metrics = {
                        m.campaign_external_id: m for m in adapter.iter_daily_metrics(account, yesterday, yesterday)
                    }
                    self.stdout.write(
                        self.style.MIGRATE_HEADING(
                            f"{name} {account.external_id} {account.name} ({account.currency_code}, {account.time_zone}) "
                            f"— {yesterday}"
                        )
                    )
                    for campaign in adapter.list_campaigns(account):
                        m = metrics.get(campaign.external_id)
                        numbers = (
                            f"impr {m.impressions:>7,}  clicks {m.clicks:>5,}  cost {_money(m.cost_micros, account.currency_code):>14}"
                            f"  conv {m.conversions:>6}"
                            if m
                            else "no delivery"
                        )
                        self.stdout.write(
                            f"  {campaign.external_id:>16}  {campaign.status:8} "
                            f"budget {_money(campaign.daily_budget_micros, account.currency_code):>14}  "
                            f"{campaign.name[:32]:32}  {numbers}"
                        )
            except PlatformError as exc:
                raise CommandError(f"{name}: {exc}") from exc
