"""Fault injection shared by both emulators: how often and how a call should fail.

Set per platform from settings (``ADS_SANDBOX_FAULTS_GOOGLE`` / ``ADS_SANDBOX_FAULTS_META``,
e.g. ``"quota=0.1,unavailable=0.05,latency_ms=30"``) or changed at run time by tests,
which hold the emulator's state object.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    quota: float = 0.0  # share of calls answered with a rate-limit / quota error
    unavailable: float = 0.0  # share answered "unavailable" (Google UNAVAILABLE, Graph 5xx/code 2)
    auth: float = 0.0  # share refused as if the token were invalid
    timeout_after_accept: float = 0.0  # share that do the work, then fail as a timeout
    latency_ms: int = 0  # added to every call
    quota_retry_seconds: int = 2  # the retry delay a quota error announces
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``"quota=0.1,latency_ms=20"`` → Faults; an unknown name is an error, not ignored."""
        known = {f.name: f.type for f in fields(cls) if not f.name.startswith("_")}
        values: dict[str, Any] = {}  # int or float by name; the constructor sees each by keyword
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, raw = part.partition("=")
            name = name.strip()
            if name not in known:
                raise ValueError(f"Unknown sandbox fault {name!r}; known: {', '.join(sorted(known))}")
            values[name] = int(raw) if name in ("latency_ms", "quota_retry_seconds", "seed") else float(raw)
        return cls(**values)

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def pick(self) -> str | None:
        """Sleep for the configured latency, then name the fault this call suffers, if any."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        for name in ("auth", "quota", "unavailable"):
            if self.roll(getattr(self, name)):
                return name
        return None

    def reset(self) -> None:
        self.quota = self.unavailable = self.auth = self.timeout_after_accept = 0.0
        self.latency_ms = 0
