"""Keep a set of processes running: one that exits is started again, with backoff.

Used by `make run` (scripts/run_platform.py). Production does the same with Fly's restart
policy (fly.toml); the fault suite (bench/reliability.py) models it for its workers.

    supervisor = Supervisor([Program("worker", ["celery", "-A", "adsplatform", "worker"])])
    supervisor.start_all()
    try:
        while True:
            supervisor.poll()
            time.sleep(0.5)
    finally:
        supervisor.stop_all()

A program that exits is started again after a delay that doubles with each exit in a row
(1 s, 2 s, 4 s ... up to ``backoff_max``) and falls back to the first step once a run lasted
``stable_after`` seconds. Every exit is logged with its code (or signal) and when the next
start comes. ``stop_all`` sends SIGTERM to every running child, waits, and SIGKILLs what is
left, so nothing outlives the supervisor.

A program may have a liveness probe (``probe``: a command that exits 0 while the program does
its job, e.g. ``manage.py worker_alive`` for a Celery worker, which can stay alive and consume
nothing). From ``probe_grace`` seconds after each start it runs every ``probe_every`` seconds
(without blocking ``poll``; a probe still running after ``probe_timeout`` counts as a failure).
After ``probe_failures`` failures in a row the program is stopped (SIGTERM, SIGKILL after
``stop_grace`` s), logged as stalled, counted in ``stalls``, and started again like any exit.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any


def _load_resilience() -> ModuleType:
    """adsplatform/resilience.py (standard library only), loaded from its file: importing it as
    ``adsplatform.resilience`` would first run adsplatform/__init__.py, i.e. create the Celery app,
    patch kombu and export DJANGO_SETTINGS_MODULE to every child, in a process that needs none of it."""
    path = Path(__file__).resolve().parent.parent / "adsplatform" / "resilience.py"
    spec = importlib.util.spec_from_file_location("_supervisor_resilience", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from adsplatform.resilience import backoff_delay
else:
    backoff_delay = _load_resilience().backoff_delay


@dataclass
class Program:
    name: str
    command: list[str]
    cwd: Path | None = None
    env: dict[str, str] | None = None
    probe: list[str] | None = None
    probe_every: float = 15.0
    probe_timeout: float = 10.0
    probe_failures: int = 3
    probe_grace: float = 60.0
    stop_grace: float = 10.0
    # Filled in while supervised.
    process: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    starts: int = 0
    exits_in_a_row: int = 0
    restart_at: float | None = None
    stalls: int = 0  # times it was replaced for failing its probe
    failed_probes: int = 0  # in a row
    probe_process: subprocess.Popen | None = field(default=None, repr=False)
    probe_started_at: float = 0.0
    next_probe_at: float = 0.0
    kill_at: float | None = None  # stopping it for a failed probe: SIGKILL then


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _stderr_log(message: str) -> None:
    print(f"[supervisor] {message}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(
        self,
        programs: list[Program],
        *,
        backoff_start: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        log: Callable[[str], None] = _stderr_log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.programs = list(programs)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.log = log
        self.clock = clock
        self.stopping = False

    def __getitem__(self, name: str) -> Program:
        return next(p for p in self.programs if p.name == name)

    def add(self, program: Program, *, start: bool = True) -> Program:
        self.programs.append(program)
        if start:
            self.start(program)
        return program

    def start(self, program: Program) -> subprocess.Popen[Any]:
        # The children stay in the supervisor's process group: a signal to the group (Ctrl-C in a
        # terminal) reaches every one of them directly, even if the supervisor is gone first.
        process = program.process = subprocess.Popen(program.command, cwd=program.cwd, env=program.env)
        program.started_at = self.clock()
        program.starts += 1
        program.restart_at = None
        program.failed_probes = 0
        program.kill_at = None
        program.next_probe_at = program.started_at + program.probe_grace
        return process

    def start_all(self) -> None:
        for program in self.programs:
            if program.process is None:
                self.start(program)

    def delay_for(self, exits_in_a_row: int) -> float:
        """Seconds to wait before the next start after this many exits in a row (1, 2, ...)."""
        return backoff_delay(exits_in_a_row, base=self.backoff_start, cap=self.backoff_max)

    def poll(self) -> None:
        """Notice exits and schedule their restart; start what is due. Call it every ~0.5 s."""
        if self.stopping:
            return
        now = self.clock()
        for program in self.programs:
            process = program.process
            if process is not None and program.restart_at is None and process.poll() is not None:
                ran = now - program.started_at
                program.exits_in_a_row = 1 if ran >= self.stable_after else program.exits_in_a_row + 1
                delay = self.delay_for(program.exits_in_a_row)
                program.restart_at = now + delay
                self.log(
                    f"{program.name} (pid {process.pid}) {_describe_exit(process.returncode)} after {ran:.1f}s; "
                    f"starting it again in {delay:.1f}s (exit {program.exits_in_a_row} in a row)"
                )
            if process is not None and program.restart_at is None and process.returncode is None:
                self._probe(program, now)
            if program.restart_at is not None and now >= program.restart_at:
                started = self.start(program)
                self.log(f"{program.name} started again (pid {started.pid}, start {program.starts})")

    def _probe(self, program: Program, now: float) -> None:
        """Run the program's liveness probe when due, read its result, stop it after N failures."""
        process = program.process
        if process is None:
            return  # probed only while running
        if program.kill_at is not None:
            if now >= program.kill_at:
                self.log(f"{program.name} (pid {process.pid}) did not stop in {program.stop_grace:.0f}s; killing it")
                process.kill()
                program.kill_at = float("inf")
            return
        if not program.probe:
            return
        probe = program.probe_process
        if probe is None:
            if now >= program.next_probe_at:
                program.probe_process = subprocess.Popen(
                    program.probe,
                    cwd=program.cwd,
                    env=program.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                program.probe_started_at = now
            return
        code = probe.poll()
        if code is None and now - program.probe_started_at < program.probe_timeout:
            return
        if code is None:
            probe.kill()
            probe.wait()
            why = f"probe did not answer in {program.probe_timeout:.0f}s"
        else:
            lines = ((probe.stderr.read() if probe.stderr else "") or "").strip().splitlines()
            why = lines[-1] if lines else f"probe exited with code {code}"
        if probe.stderr:
            probe.stderr.close()
        program.probe_process = None
        program.next_probe_at = now + program.probe_every
        if code == 0:
            program.failed_probes = 0
            return
        program.failed_probes += 1
        self.log(
            f"{program.name} (pid {process.pid}) failed its liveness probe "
            f"({program.failed_probes}/{program.probe_failures}): {why}"
        )
        if program.failed_probes >= program.probe_failures:
            program.stalls += 1
            self.log(
                f"{program.name} (pid {process.pid}) is stalled (alive, not doing its job); "
                f"stopping it to start a fresh one (stall {program.stalls})"
            )
            process.terminate()
            program.kill_at = now + program.stop_grace

    def running(self) -> list[Program]:
        return [p for p in self.programs if p.process is not None and p.process.poll() is None]

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every running child, wait up to ``grace`` seconds, SIGKILL the rest."""
        self.stopping = True
        for program in self.programs:
            if program.probe_process is not None and program.probe_process.poll() is None:
                program.probe_process.kill()
                program.probe_process.wait()
        for program in self.programs:
            if program.process is not None and program.process.poll() is None:
                program.process.terminate()
        deadline = time.monotonic() + grace
        for program in self.programs:
            if program.process is None:
                continue
            try:
                program.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{program.name} (pid {program.process.pid}) did not stop in {grace:.0f}s; killing it")
                program.process.kill()
                program.process.wait(timeout=5)
