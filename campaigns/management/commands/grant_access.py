"""`python manage.py grant_access USERNAME --role ROLE (--account PLATFORM:EXTERNAL_ID ... | --all-accounts) [--revoke]`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from campaigns import access
from campaigns.models import AccountRole, AdAccount, Platform


def _account(reference: str) -> AdAccount:
    platform, _, external_id = reference.partition(":")
    if platform not in Platform.values or not external_id:
        raise CommandError(f"{reference!r}: write PLATFORM:EXTERNAL_ID, e.g. google:1234567890 or meta:10150000000.")
    external_id = external_id.replace("-", "").removeprefix("act_")
    found = AdAccount.objects.filter(platform=platform, external_id=external_id).first()
    if found is None:
        raise CommandError(f"No {platform} account {external_id}; `manage.py discover_accounts` lists what exists.")
    return found


class Command(BaseCommand):
    help = "Grant (or with --revoke, take away) a role on ad accounts: viewer, advertiser or admin."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=AccountRole.values, help="viewer, advertiser or admin.")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--account", action="append", metavar="PLATFORM:EXTERNAL_ID", help="An account (repeatable)."
        )
        where.add_argument("--all-accounts", action="store_true", help="Every account, today's and future ones.")
        parser.add_argument("--revoke", action="store_true", help="Take the access away instead.")

    def handle(self, *args, username, role=None, account=None, all_accounts=False, revoke=False, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}; create one with `manage.py createsuperuser` or in admin.")
        if not revoke and role is None:
            raise CommandError("Say which role: --role viewer, --role advertiser or --role admin.")
        targets: list[AdAccount | None] = [None] if all_accounts else [_account(ref) for ref in account]
        for target in targets:
            where = "every account" if target is None else str(target)
            if revoke:
                removed = access.account_access_revoke(user=user, account=target)
                self.stdout.write(f"{username}: {'access removed' if removed else 'had no access'} on {where}.")
            else:
                access.account_access_grant(user=user, account=target, role=role)
                self.stdout.write(f"{username}: {role} on {where}.")
