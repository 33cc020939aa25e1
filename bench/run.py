"""`make bench`: run every benchmark in bench/, print one table, write JSON and Markdown.

Each benchmark script prints a final JSON line ``{"bench": ..., "figures": [...]}``; this
runner collects them. Results go to bench/results/latest.json and latest.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"

# (script, arguments): the sizes the issues name; each bounded in time.
BENCHMARKS = [
    ("bench_campaign_api.py", []),
    ("bench_dashboard.py", []),
    ("bench_sync.py", []),
    ("bench_scale_out.py", []),
    ("bench_google_stream.py", []),
    ("bench_meta_stream.py", []),
    ("bench_conversions.py", []),
    # Redis as the broker, as in production (REDIS_URL); database 14 keeps clear of the tests' 15.
    ("bench_webhooks.py", ["--redis-url", os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")]),
]


def _fmt(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# BENCH_ONLY=bench_campaign_api,bench_webhooks runs those alone; a slow machine may need more
# than BENCH_TIMEOUT_SECONDS for one (a timed-out benchmark is reported, the others still run).
ONLY = {name.strip().removesuffix(".py") for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()}
TIMEOUT_SECONDS = int(os.environ.get("BENCH_TIMEOUT_SECONDS", "1800"))


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    collected, failures = [], []
    for script, args in BENCHMARKS:
        path = BENCH_DIR / script
        if not path.exists() or (ONLY and path.stem not in ONLY):
            continue
        print(f"--> {script}", flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, str(path), *args], capture_output=True, text=True, timeout=TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{script} (over {TIMEOUT_SECONDS} s)")
            continue
        lines = [line for line in result.stdout.splitlines() if line.startswith('{"bench"')]
        if result.returncode != 0 or not lines:
            failures.append(script)
            print(result.stdout[-2000:], result.stderr[-3000:], sep="\n")
            continue
        report = json.loads(lines[-1])
        report["seconds"] = round(time.monotonic() - started, 1)
        collected.append(report)

    header = "| benchmark | figure | value | floor / baseline | ratio | target |\n|---|---|---|---|---|---|"
    rows = []
    for report in collected:
        for fig in report["figures"]:
            floor = fig.get("floor")
            ratio = f"{fig['value'] / floor:.2f}×" if floor else ""
            floor_text = f"{_fmt(floor)} ({fig.get('floor_name', '')})" if floor else ""
            rows.append(
                f"| {report['bench']} | {fig['figure']} | {_fmt(fig['value'])} | {floor_text} | {ratio} | "
                f"{fig.get('target', '')} |"
            )
    table = "\n".join([header, *rows])
    print("\n" + table)
    (RESULTS / "latest.json").write_text(json.dumps(collected, indent=2, default=str))
    (RESULTS / "latest.md").write_text(table + "\n")
    if failures:
        print(f"\nFailed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
