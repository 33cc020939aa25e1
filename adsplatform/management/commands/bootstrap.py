"""Everything a fresh install needs before it serves: safe to run any number of times."""

from __future__ import annotations

import importlib
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

# Each app may offer a `bootstrap.run(stdout)` that seeds what it needs (keys, sources,
# sandbox accounts); they run in this order, each idempotent.
_APP_BOOTSTRAPS = ("connections", "campaigns", "conversions", "webhooks", "optimization")


class Command(BaseCommand):
    help = "Migrate, create the operator user, and seed each app's start-up data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--no-migrate", action="store_true", help="Skip migrations.")

    def handle(self, *args, no_migrate: bool = False, **options):
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("Database migrated.")
        self._ensure_operator()
        for label in _APP_BOOTSTRAPS:
            try:
                module = importlib.import_module(f"{label}.bootstrap")
            except ModuleNotFoundError as exc:
                if exc.name != f"{label}.bootstrap":
                    raise
                continue
            module.run(stdout=self.stdout)

    def _ensure_operator(self) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"Operator user {username!r} exists; its password is unchanged.")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(16)
        user_model.objects.create_superuser(
            username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password
        )
        if generated:
            # Kept (owner-only) so the next `make run` can show it again.
            secret_file = settings.VAR_DIR / "operator_password"
            secret_file.write_text(password)
            secret_file.chmod(0o600)
            self.stdout.write(f"Created operator {username!r} with generated password: {password}")
        else:
            self.stdout.write(f"Created operator {username!r} (password from DJANGO_SUPERUSER_PASSWORD).")
