"""Stream Meta campaign insights (N campaigns x D days) through MetaPlatform.iter_daily_metrics.

The Graph API emulator runs in a child process, so the figures are the client's own:
the official SDK over HTTP, cursor paging, and our row mapping. Prints rows/s and the
client's peak RSS; the last line is a JSON object with every figure.

    .venv/bin/python bench/bench_meta_stream.py --campaigns 1000 --days 30
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere in the checkout

from bench.common import peak_rss_mb
from platforms.base import Account
from platforms.meta import MetaPlatform
from platforms.registry import MetaConfig
from platforms.sandbox import credentials
from platforms.sandbox.meta import DEMO_ACCOUNT_ID, MetaSandboxData


def _serve(campaigns: int, days: int, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    from platforms.sandbox.meta import start

    sandbox = start(data=MetaSandboxData.scaled(campaigns=campaigns, days=max(days, 90)))
    ports.put(sandbox.port)
    stop.wait()
    sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=500, help="insights rows per Graph page (limit)")
    parser.add_argument("--api-version", default="v26.0")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(args.campaigns, args.days, ports, stop), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        config = MetaConfig(
            app_id=credentials.META_APP_ID,
            app_secret=credentials.META_APP_SECRET,
            access_token=credentials.META_ACCESS_TOKEN,
            business_id=credentials.META_BUSINESS_ID,
            api_version=args.api_version,
            graph_url=f"http://127.0.0.1:{port}",
        )
        platform = MetaPlatform(config, insights_page_size=args.page_size)
        account = Account("meta", DEMO_ACCOUNT_ID, "Sandbox", "EUR", "Europe/Berlin")
        today = datetime.now(ZoneInfo(account.time_zone)).date()
        date_from, date_to = today - timedelta(days=args.days), today - timedelta(days=1)

        platform.check_credentials()  # warm the connection and imports outside the timing
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        rows = 0
        cost_micros = 0
        for row in platform.iter_daily_metrics(account, date_from, date_to):
            rows += 1
            cost_micros += row.cost_micros
        elapsed = time.perf_counter() - started
        peak = peak_rss_mb()
    finally:
        stop.set()
        server.join(timeout=10)

    rows_per_second = rows / elapsed if elapsed else 0.0
    pages = -(-rows // args.page_size)
    print(f"Meta insights: {args.campaigns} campaigns x {args.days} days -> {rows} rows in {elapsed:.2f} s")
    print(f"  {rows_per_second:,.0f} rows/s over ~{pages} pages of {args.page_size}")
    print(f"  client peak RSS {peak:.1f} MiB (before streaming {rss_before:.1f} MiB)")
    from bench.common import emit

    emit(
        "meta_stream",
        [
            {
                "figure": f"Meta insights rows/s ({args.campaigns:,} campaigns × {args.days} days)",
                "value": rows_per_second,
                "target": "",
            },
            {"figure": "Meta stream client peak RSS (MiB)", "value": peak, "target": "flat"},
        ],
    )
    print(
        json.dumps(
            {
                "benchmark": "meta_insights_stream",
                "campaigns": args.campaigns,
                "days": args.days,
                "page_size": args.page_size,
                "api_version": args.api_version,
                "rows": rows,
                "seconds": round(elapsed, 3),
                "rows_per_second": round(rows_per_second, 1),
                "client_peak_rss_mib": round(peak, 1),
                "client_rss_before_stream_mib": round(rss_before, 1),
                "total_cost_micros": cost_micros,
            }
        )
    )


if __name__ == "__main__":
    main()
