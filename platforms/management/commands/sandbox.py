"""`python manage.py sandbox`: the local Google Ads (gRPC + OAuth) and Graph API emulators."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platforms.sandbox.faults import Faults


class Command(BaseCommand):
    help = "Serve the Google Ads and Meta emulators on loopback until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.ADS_SANDBOX_HOST)
        parser.add_argument("--google-port", type=int, default=settings.ADS_SANDBOX_GOOGLE_PORT)
        parser.add_argument("--oauth-port", type=int, default=settings.ADS_SANDBOX_OAUTH_PORT)
        parser.add_argument("--meta-port", type=int, default=settings.ADS_SANDBOX_META_PORT)
        # Defaults from settings, so `make run` (which starts `manage.py sandbox` bare) can be scaled:
        # `ADS_SANDBOX_CAMPAIGNS=10000 make run`.
        parser.add_argument(
            "--campaigns",
            type=int,
            default=settings.ADS_SANDBOX_CAMPAIGNS,
            help="Scale: campaigns per account (0 = demo data). Default ADS_SANDBOX_CAMPAIGNS.",
        )
        parser.add_argument(
            "--days", type=int, default=settings.ADS_SANDBOX_DAYS, help="Days of metrics the emulators report."
        )
        parser.add_argument("--google-faults", default=settings.ADS_SANDBOX_FAULTS_GOOGLE, help='e.g. "quota=0.1"')
        parser.add_argument("--meta-faults", default=settings.ADS_SANDBOX_FAULTS_META)

    def handle(self, *args: Any, **opts: Any) -> None:
        from platforms.sandbox import google as google_sandbox
        from platforms.sandbox import meta as meta_sandbox

        try:
            google_faults = Faults.parse(opts["google_faults"])
            meta_faults = Faults.parse(opts["meta_faults"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        google_data = meta_data = None
        if opts["campaigns"]:
            google_data = google_sandbox.GoogleSandboxData.scaled(campaigns=opts["campaigns"], days=opts["days"])
            meta_data = meta_sandbox.MetaSandboxData.scaled(campaigns=opts["campaigns"], days=opts["days"])
        settings.ADS_SANDBOX_DIR.mkdir(parents=True, exist_ok=True)
        google = google_sandbox.start(
            host=opts["host"],
            grpc_port=opts["google_port"],
            oauth_port=opts["oauth_port"],
            cert_dir=settings.ADS_SANDBOX_DIR,
            data=google_data,
            faults=google_faults,
        )
        meta = meta_sandbox.start(host=opts["host"], port=opts["meta_port"], data=meta_data, faults=meta_faults)
        self.stdout.write(
            f"Sandbox ready: Google Ads gRPC {opts['host']}:{google.grpc_port} "
            f"(OAuth http://{opts['host']}:{google.oauth_port}/token, CA {google.ca_path}), "
            f"Graph API {meta.url}"
        )
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        stopped.wait()
        google.stop()
        meta.stop()
        self.stdout.write("Sandbox stopped.")
