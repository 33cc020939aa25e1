"""scripts/supervisor.py, for real: children are processes, exits are restarted with growing
backoff, and SIGTERM to the supervisor leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from supervisor import Program, Supervisor  # noqa: E402

# A supervisor process of its own, as `make run` is: SIGTERM stops it (and everything it started).
DRIVER = textwrap.dedent(
    """
    import json, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from supervisor import Program, Supervisor

    programs = [Program(name, command) for name, command in json.loads(sys.argv[2])]
    supervisor = Supervisor(programs, backoff_start=0.3, backoff_max=5, stable_after=60,
                            log=lambda line: print(line, flush=True))

    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all(grace=float(sys.argv[3]))
        print("stopped", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    supervisor.start_all()
    print("started", flush=True)
    while True:
        supervisor.poll()
        time.sleep(0.05)
    """
)


def _child(tmp_path: Path, body: str) -> list[str]:
    """A Python child that appends "<pid> <time>" to starts.log when it starts, then runs body."""
    log = tmp_path / "starts.log"
    code = f"import os, signal, sys, time\nopen({str(log)!r}, 'a').write(f'{{os.getpid()}} {{time.time()}}\\n')\n{body}"
    return [sys.executable, "-c", code]


def _starts(tmp_path: Path) -> list[tuple[int, float]]:
    path = tmp_path / "starts.log"
    if not path.exists():
        return []
    return [(int(pid), float(at)) for pid, at in (line.split() for line in path.read_text().splitlines())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not running.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _driver(tmp_path: Path, programs: list[tuple[str, list[str]]], grace: float = 5.0) -> subprocess.Popen:
    import json

    (tmp_path / "driver.py").write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(ROOT / "scripts"), json.dumps(programs), str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _terminate(driver: subprocess.Popen) -> str:
    driver.send_signal(signal.SIGTERM)
    try:
        out, _ = driver.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        out, _ = driver.communicate()
        pytest.fail(f"the supervisor did not stop on SIGTERM:\n{out}")
    return out


def test_a_child_that_exits_is_started_again_with_growing_backoff(tmp_path):
    driver = _driver(tmp_path, [("crasher", _child(tmp_path, "time.sleep(0.1); sys.exit(3)"))])
    try:
        assert _wait(lambda: len(_starts(tmp_path)) >= 4, 15), "not restarted often enough"
    finally:
        out = _terminate(driver)
    starts = [at for _pid, at in _starts(tmp_path)]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # Each gap is the child's 0.1 s run + the backoff (0.3, 0.6, 1.2 s) + the next start-up, which
    # a loaded machine stretches: so each gap is at least its run and backoff, and the first is
    # not much more (the backoff doubling itself is what the messages below say).
    assert all(gap >= 0.1 + backoff for gap, backoff in zip(gaps, (0.3, 0.6, 1.2), strict=False)), gaps
    assert gaps[0] < 3.0, gaps
    assert "crasher (pid" in out and "exited with code 3" in out
    assert "starting it again in 0.3s (exit 1 in a row)" in out
    assert "starting it again in 0.6s (exit 2 in a row)" in out
    assert "crasher started again" in out


def test_a_child_killed_by_a_signal_is_named_so_and_its_sibling_keeps_running(tmp_path):
    # Each child says which one it is: the two start at the same moment, in either order.
    worker = _child(tmp_path, f"open({str(tmp_path / 'worker.pid')!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)")
    driver = _driver(tmp_path, [("worker", worker), ("web", _child(tmp_path, "time.sleep(60)"))])
    try:
        assert _wait(lambda: len(_starts(tmp_path)) == 2 and (tmp_path / "worker.pid").exists(), 10)
        worker_pid = int((tmp_path / "worker.pid").read_text())
        (web_pid,) = [pid for pid, _ in _starts(tmp_path) if pid != worker_pid]
        os.kill(worker_pid, signal.SIGKILL)
        assert _wait(lambda: len(_starts(tmp_path)) == 3, 10), "the killed child was not started again"
        assert _alive(web_pid), "the sibling was stopped"
    finally:
        out = _terminate(driver)
    assert f"worker (pid {worker_pid}) was killed by SIGKILL" in out


def test_sigterm_stops_every_child_even_one_that_ignores_it(tmp_path):
    stubborn = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"
    driver = _driver(
        tmp_path,
        [("web", _child(tmp_path, "time.sleep(60)")), ("stubborn", _child(tmp_path, stubborn))],
        grace=1.0,
    )
    assert _wait(lambda: len(_starts(tmp_path)) == 2, 10)
    time.sleep(0.3)  # the stubborn child has set its handler
    pids = [pid for pid, _ in _starts(tmp_path)]
    out = _terminate(driver)
    assert driver.returncode == 0 and "stopped" in out
    assert not [pid for pid in pids if _alive(pid)], out
    assert "stubborn" in out and "did not stop in 1s; killing it" in out
    # Nothing was started again while stopping.
    assert len(_starts(tmp_path)) == 2


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run():
    now = [0.0]
    lines: list[str] = []
    supervisor = Supervisor([], backoff_start=1, backoff_max=8, stable_after=60, log=lines.append, clock=lambda: now[0])
    assert [supervisor.delay_for(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    program = supervisor.add(Program("quick", [sys.executable, "-c", "pass"]))
    program.process.wait()
    for expected in (1, 2, 4):
        supervisor.poll()  # notices the exit
        assert program.restart_at == now[0] + expected
        now[0] = program.restart_at
        supervisor.poll()  # starts it again
        program.process.wait()
    now[0] += 61  # this run counted as stable: the next exit starts from the first step again
    supervisor.poll()
    assert program.exits_in_a_row == 1 and program.restart_at == now[0] + 1
    supervisor.stop_all()


def test_a_child_alive_but_failing_its_liveness_probe_is_replaced(tmp_path):
    """A child that runs and does nothing (a worker that stopped consuming): its probe fails, and
    after ``probe_failures`` failures in a row it is stopped and started again, logged as stalled."""
    lines: list[str] = []
    verdict = tmp_path / "verdict"
    verdict.write_text("1")  # the probe's exit code
    probe = [
        sys.executable,
        "-c",
        f"import sys; print('not consuming', file=sys.stderr); sys.exit(int(open({str(verdict)!r}).read()))",
    ]
    program = Program(
        "worker",
        _child(tmp_path, "time.sleep(60)"),
        probe=probe,
        probe_every=0.1,
        probe_failures=2,
        probe_grace=0.2,
        stop_grace=2,
    )
    # The web child logs its start elsewhere: starts.log then holds the worker's starts only.
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    healthy = Program(
        "web", _child(web_dir, "time.sleep(60)"), probe=[sys.executable, "-c", "pass"], probe_every=0.1, probe_grace=0
    )
    supervisor = Supervisor([program, healthy], backoff_start=0.2, log=lines.append)
    supervisor.start_all()
    try:

        def poll_until(predicate, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not predicate():
                supervisor.poll()
                time.sleep(0.05)
            return predicate()

        assert poll_until(lambda: program.starts == 2, 20), lines
        first_pid = _starts(tmp_path)[0][0]
        assert not _alive(first_pid)
        assert program.stalls == 1 and healthy.stalls == 0 and healthy.starts == 1
        assert any("failed its liveness probe (1/2): not consuming" in line for line in lines), lines
        assert any("is stalled (alive, not doing its job)" in line for line in lines), lines
        # The new one answers its probe: it is left alone.
        verdict.write_text("0")
        started = program.starts
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            supervisor.poll()
            time.sleep(0.05)
        assert program.starts == started and program.failed_probes == 0
    finally:
        supervisor.stop_all(grace=5)
