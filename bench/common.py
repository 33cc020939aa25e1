"""Shared benchmark plumbing: a database to seed, gunicorn on loopback, a bounded HTTP load.

Every benchmark prints one JSON line at the end (``{"bench": name, "figures": [...]}``);
``bench/run.py`` collects them into a table. Traffic only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DB = "postgres://postgres@127.0.0.1:5432/ads_bench"


def bench_database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_BENCH_DB)


def ensure_database(url: str) -> None:
    """Create the benchmark database if it does not exist (PostgreSQL only)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def django_setup(database_url: str, **env: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adsplatform.settings")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PLATFORM_APP = "adsplatform.wsgi:application"
FLOOR_APP = "bench.floor_app:application"


@contextmanager
def gunicorn(
    env: dict[str, str],
    workers: int = 2,
    *,
    app: str = PLATFORM_APP,
    threads: int | None = None,
    worker_connections: int | None = None,
):
    """Serve ``app`` on a loopback port for the duration of the block, with the platform's gunicorn.conf.py.

    The platform and its HTTP floor (``FLOOR_APP``) are started by this one function, so the
    two differ only in the application.
    """
    port = free_port()
    full_env = {**os.environ, **env, "WEB_CONCURRENCY": str(workers), "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    if threads is not None:
        full_env["GUNICORN_THREADS"] = str(threads)
    if worker_connections is not None:
        full_env["GUNICORN_WORKER_CONNECTIONS"] = str(worker_connections)
    # gunicorn's log goes to a file: an unread pipe would block it once the pipe is full.
    log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("gunicorn exited: " + Path(log.name).read_text()[-2000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start: " + Path(log.name).read_text()[-2000:])
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()
        os.unlink(log.name)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0.0,
            "statuses": self.statuses,
        }


def _request_bytes(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # trailers
                break
            await reader.readexactly(size + 2)
    else:
        await reader.read()  # delimited by the server closing
        return status, False
    return status, headers.get(b"connection") != b"close"


def http_load(
    port: int,
    make_request: Callable[[int], tuple[str, str, bytes | None, dict[str, str]]],
    *,
    total: int,
    concurrency: int,
    timeout: float = 10.0,
) -> LoadResult:
    """Send ``total`` requests from ``concurrency`` keep-alive clients; bounded in count.

    One thread drives every client with asyncio over raw HTTP/1.1 and every request is built
    before the clock starts, so the load generator costs tens of microseconds a request: on a
    box whose cores the server shares, a heavier client (threads of http.client cost ~0.5 ms
    a request, plus the GIL hand-offs) would be measured as server latency. A failed request
    counts as status 0.
    """
    requests_bytes = [_request_bytes(port, *make_request(index)) for index in range(total)]
    result = LoadResult(requests=0, seconds=0.0)

    async def client(pending: Iterator[bytes]) -> None:
        reader = writer = None
        for request in pending:
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                status, keep_alive = 0, False
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if not keep_alive and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def main() -> None:
        pending = iter(requests_bytes)  # shared: each client takes the next request when free
        await asyncio.gather(*(client(pending) for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies_ms)
    return result


def open_loop_load(
    port: int,
    make_request: Callable[[int], tuple[str, str, bytes | None, dict[str, str]]],
    *,
    rate: float,
    total: int,
    max_connections: int = 256,
    timeout: float = 10.0,
) -> LoadResult:
    """Send ``total`` requests at a fixed arrival rate, whatever the server's pace (an open loop).

    A closed loop (``http_load``) waits for each answer before the next request, so a slow
    server is sent less and its queue never shows: the tail it reports is flattered
    ("coordinated omission"). Here request ``i`` is due at ``start + i / rate``; it goes out on
    an idle keep-alive connection, or a new one while fewer than ``max_connections`` are open,
    and its latency counts from when it was due, so time spent waiting for a connection is
    counted too. None of the maintained open-loop generators (wrk2, vegeta, k6) is packaged
    for this project's package sources, so this one shares the closed loop's HTTP code.
    """
    requests_bytes = [_request_bytes(port, *make_request(index)) for index in range(total)]
    result = LoadResult(requests=0, seconds=0.0)

    async def main() -> None:
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        slots = asyncio.Semaphore(max_connections)

        async def send(request: bytes, due: float) -> None:
            async with slots:
                connection = idle.pop() if idle else None
                try:
                    if connection is None:
                        connection = await asyncio.open_connection("127.0.0.1", port)
                    reader, writer = connection
                    writer.write(request)
                    status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                    status, keep_alive = 0, False
                result.latencies_ms.append((time.perf_counter() - due) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if connection is not None:
                    if keep_alive:
                        idle.append(connection)
                    else:
                        connection[1].close()

        start = time.perf_counter()
        in_flight = []
        for index, request in enumerate(requests_bytes):
            due = start + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            in_flight.append(asyncio.create_task(send(request, due)))
        await asyncio.gather(*in_flight)
        for _, writer in idle:
            writer.close()

    started = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies_ms)
    return result


def alternate(rounds: int, loads: dict[str, Callable[[], LoadResult]]) -> dict[str, dict]:
    """Run each load once a round, in turn (the order flips every round); the medians of the rounds.

    Alternating spreads the machine's drift (another process, CPU frequency, the database's
    caches) over both sides of a comparison instead of landing it all on one.
    """
    summaries: dict[str, list[dict]] = {name: [] for name in loads}
    names = list(loads)
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            summaries[name].append(loads[name]().summary())
    medians = {}
    for name, runs in summaries.items():
        statuses: dict[int, int] = {}
        for run in runs:
            for status, count in run["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        medians[name] = {
            "rounds": len(runs),
            "requests": sum(run["requests"] for run in runs),
            **{key: statistics.median(run[key] for run in runs) for key in ("rps", "p50_ms", "p99_ms", "mean_ms")},
            "rps_each_round": [run["rps"] for run in runs],
            "statuses": statuses,
        }
    return medians


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB.

    Read from the kernel's high-water mark of this process image (``VmHWM``): ``ru_maxrss``
    survives ``execve``, so a child started by a large parent (fork, then exec) would report the
    parent's size, not its own. Elsewhere than Linux, ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(name: str, figures: list[dict]) -> None:
    """The last line a benchmark prints: its figures, for bench/run.py.

    Each figure: {"figure", "value", "unit", "floor" (optional), "floor_name", "target"}.
    """
    print(json.dumps({"bench": name, "figures": figures}, default=str), flush=True)
