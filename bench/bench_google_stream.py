"""Stream 10,000 campaigns x 30 days of metrics through GoogleAdsPlatform.iter_daily_metrics,
proto-plus off and on: rows/s and peak memory.

    .venv/bin/python bench/bench_google_stream.py [--campaigns 10000] [--days 30] [--repeat 1]

The emulator runs in its own process (so its CPU and memory are not the client's), and each
mode is measured in a fresh child process, because peak RSS (ru_maxrss) only ever grows.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import peak_rss_mb  # noqa: E402

ACCOUNT_ID = "1234567890"
ACCOUNT_TIME_ZONE = "America/New_York"


def run_child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = args.ca_path  # before the first channel
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from platforms.base import Account
    from platforms.google_ads import GoogleAdsPlatform, measure_metrics_stream
    from platforms.registry import GoogleAdsConfig
    from platforms.sandbox import credentials

    config = GoogleAdsConfig(
        developer_token=credentials.GOOGLE_DEVELOPER_TOKEN,
        client_id=credentials.GOOGLE_CLIENT_ID,
        client_secret=credentials.GOOGLE_CLIENT_SECRET,
        refresh_token=credentials.GOOGLE_REFRESH_TOKEN,
        login_customer_id=credentials.GOOGLE_MANAGER_ID,
        api_version=args.api_version,
        endpoint=args.endpoint,
        token_uri=args.token_uri,
        use_proto_plus=args.mode == "on",
    )
    account = Account("google", ACCOUNT_ID, "bench", "USD", ACCOUNT_TIME_ZONE, credentials.GOOGLE_MANAGER_ID)
    last = datetime.now(ZoneInfo(ACCOUNT_TIME_ZONE)).date() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    # Warm up imports (the version's types), the token and a channel before measuring memory.
    warm = GoogleAdsPlatform(config)
    warm.check_credentials()
    sum(1 for _ in warm.iter_daily_metrics(account, last, last))
    warm.close()
    baseline = peak_rss_mb()

    checksum = {"cost_micros": 0}

    def consume(row) -> None:  # touch a field so nothing is optimised into a no-op
        checksum["cost_micros"] += row.cost_micros

    best = None
    for _ in range(args.repeat):
        measured = measure_metrics_stream(
            config, account, first, last, use_proto_plus=args.mode == "on", consume=consume
        )
        if best is None or measured.seconds < best.seconds:
            best = measured
    assert best is not None
    print(
        json.dumps(
            {
                "use_proto_plus": best.use_proto_plus,
                "rows": best.rows,
                "seconds": round(best.seconds, 3),
                "rows_per_second": round(best.rows_per_second),
                "peak_rss_mib": round(peak_rss_mb(), 1),
                "rss_before_stream_mib": round(baseline, 1),
                "cost_micros_checksum": checksum["cost_micros"] // args.repeat,
            }
        ),
        flush=True,
    )


def run_parent(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryDirectory(prefix="google-bench-tls-") as cert_dir:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "platforms.sandbox.google",
                "--cert-dir",
                cert_dir,
                "--campaigns",
                str(args.campaigns),
                "--days",
                str(max(args.days, 90)),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            ports = json.loads(server.stdout.readline())
            endpoint = f"127.0.0.1:{ports['grpc_port']}"
            token_uri = f"http://127.0.0.1:{ports['oauth_port']}/token"
            results = []
            for mode in ("off", "on"):
                child = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--child",
                        "--mode",
                        mode,
                        "--endpoint",
                        endpoint,
                        "--token-uri",
                        token_uri,
                        "--ca-path",
                        ports["ca_path"],
                        "--days",
                        str(args.days),
                        "--repeat",
                        str(args.repeat),
                        "--api-version",
                        args.api_version,
                    ],
                    cwd=REPO_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                measured = json.loads(child.stdout.strip().splitlines()[-1])
                results.append(measured)
                print(
                    f"proto-plus {mode:>3}: {measured['rows']:,} rows in {measured['seconds']:.2f} s = "
                    f"{measured['rows_per_second']:,} rows/s; peak RSS {measured['peak_rss_mib']} MiB "
                    f"({measured['rss_before_stream_mib']} MiB before the stream)",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    off, on = results
    if off["cost_micros_checksum"] != on["cost_micros_checksum"]:
        raise SystemExit("The two modes read different data: the benchmark is void.")
    faster = "off" if off["rows_per_second"] >= on["rows_per_second"] else "on"
    summary = {
        "benchmark": "google_metrics_stream",
        "campaigns": args.campaigns,
        "days": args.days,
        "api_version": args.api_version,
        "proto_plus_off": off,
        "proto_plus_on": on,
        "faster": f"use_proto_plus={'False' if faster == 'off' else 'True'}",
        "speedup": round(
            max(off["rows_per_second"], on["rows_per_second"])
            / max(1, min(off["rows_per_second"], on["rows_per_second"])),
            2,
        ),
    }
    print(json.dumps(summary))
    from bench.common import emit

    emit(
        "google_stream",
        [
            {
                "figure": f"Google metrics stream rows/s ({args.campaigns:,} campaigns × {args.days} days, proto-plus off)",
                "value": off["rows_per_second"],
                "floor": on["rows_per_second"],
                "floor_name": "proto-plus on",
                "target": "",
            },
            {"figure": "Google stream peak RSS (MiB)", "value": off["peak_rss_mib"], "target": "flat"},
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the fastest counts")
    parser.add_argument("--api-version", default="v26")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--token-uri", help=argparse.SUPPRESS)
    parser.add_argument("--ca-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
