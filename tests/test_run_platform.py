"""`make run` refuses, before it starts or bootstraps anything, ports another program holds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_taken_port_stops_make_run_before_anything_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "PORT": str(taken),
            "ADS_SANDBOX": "1",
            "VAR_DIR": str(tmp_path / "var"),
        }
        answer = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "run_platform.py")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert answer.returncode == 1
    assert f"Already in use: 127.0.0.1:{taken} (PORT)" in answer.stderr
    assert "PORT=8100" in answer.stderr  # says how to choose other ports
    # Nothing ran: no sandbox, no bootstrap, no banner.
    assert "Sandbox ad accounts" not in answer.stdout and "is running" not in answer.stdout
