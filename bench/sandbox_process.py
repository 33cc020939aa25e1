"""The Google Ads emulator in a process of its own, shaped for a benchmark.

    .venv/bin/python bench/sandbox_process.py --cert-dir DIR --clients 20 --campaigns 500 --ad-groups 0 --days 30

``--clients`` client accounts under the sandbox's manager, each with ``--campaigns`` campaigns
of ``--ad-groups`` ad groups. Prints one JSON line (ports, CA path) and serves until stopped.
The benchmark's own process stays free of the emulator's CPU and memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platforms.sandbox.google import GoogleSandboxData, start
from platforms.sandbox.google.data import MANAGER_CUSTOMER_ID, SandboxCustomer

FIRST_CLIENT_ID = 7_000_000_001


def customers(clients: int) -> tuple[SandboxCustomer, ...]:
    manager = SandboxCustomer(MANAGER_CUSTOMER_ID, "Bench Manager", "USD", "America/New_York", manager=True)
    return (
        manager,
        *(
            SandboxCustomer(
                FIRST_CLIENT_ID + n, f"Bench Client {n:02d}", "USD", "America/New_York", manager_id=MANAGER_CUSTOMER_ID
            )
            for n in range(clients)
        ),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--campaigns", type=int, default=500)
    parser.add_argument("--ad-groups", type=int, default=0)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    data = GoogleSandboxData.scaled(
        campaigns=args.campaigns,
        days=args.days,
        customers=customers(args.clients),
        conversion_actions=(),
        ad_groups_per_campaign=args.ad_groups,
    )
    sandbox = start(host="127.0.0.1", cert_dir=args.cert_dir, data=data)
    sandbox.serve_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
