"""Start-up seeding for `make run`: the environment's credentials become one connection per platform."""

from __future__ import annotations

from connections import services


def run(*, stdout) -> None:
    connections = services.environment_connections_ensure()
    if connections:
        stdout.write(f"Environment connections ready: {', '.join(c.platform for c in connections)}.")
