"""Run the Google Ads emulator on its own: ``python -m platforms.sandbox.google --help``.

Prints one JSON line with the bound ports and the CA path, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from platforms.sandbox.faults import Faults
from platforms.sandbox.google import GoogleSandboxData, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Google Ads API emulator (gRPC + TLS) and OAuth endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--oauth-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert-dir", type=Path, required=True, help="CA and server certificate, reused if present")
    parser.add_argument("--campaigns", type=int, default=10, help="campaigns per client account")
    parser.add_argument("--days", type=int, default=90, help="days of metrics before today")
    parser.add_argument("--faults", default="", help='e.g. "quota=0.1,unavailable=0.05,latency_ms=30"')
    args = parser.parse_args(argv)

    sandbox = start(
        host=args.host,
        grpc_port=args.grpc_port,
        oauth_port=args.oauth_port,
        cert_dir=args.cert_dir,
        data=GoogleSandboxData.scaled(campaigns=args.campaigns, days=args.days),
        faults=Faults.parse(args.faults),
    )
    sandbox.serve_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
