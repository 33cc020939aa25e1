"""A pytest plugin: no secret, token or raw email address in any log line of the whole test run.

Every log record any logger handles during the session is formatted as production formats it
(``adsplatform.logging.JsonFormatter``: message, ``extra`` fields, traceback) and scanned; so is
every JSON log line a test's captured stdout/stderr holds. A finding names the test, the logger
and what kind of value leaked, never the value itself, and fails the run at the end.

Loaded for the whole session from the top-level ``tests/conftest.py``::

    pytest_plugins = ["tests.log_guard"]

The ``log_guard`` fixture gives a test the session's collector (e.g. to assert on its own lines).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field

import pytest

# A raw address anywhere in a line. Hashes, ids and "user@localhost"-style senders do not match.
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
TOKEN_PATTERNS = {
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "bearer token": re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"),
    "Google OAuth token": re.compile(r"\bya29\.[A-Za-z0-9._-]{10,}"),
    "Standard Webhooks secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=]{16,}"),
    "service API key": re.compile(r"\bibvi_sk_[A-Za-z0-9_-]{12,}"),
    "Slack webhook URL": re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/]+"),
}
# Secrets shorter than this are too common as plain words to search for.
MIN_SECRET_LENGTH = 8


def _settings_secrets() -> dict[str, str]:
    """Every configured secret, plus the sandbox's fixed credentials and the tests' own."""
    found: dict[str, str] = {}
    # Each source is optional (Django unconfigured, an app missing): the others still apply.
    with suppress(Exception):
        from django.conf import settings

        names = [
            "SECRET_KEY",
            "SERVICE_API_KEY",
            "WEBHOOK_SECRET",
            "GOOGLE_LEAD_FORM_KEY",
            "GOOGLE_ADS_DEVELOPER_TOKEN",
            "GOOGLE_ADS_CLIENT_SECRET",
            "GOOGLE_ADS_REFRESH_TOKEN",
            "META_APP_SECRET",
            "META_ACCESS_TOKEN",
        ]
        for name in names:
            found[name] = str(getattr(settings, name, "") or "")
        found["SIMPLE_JWT.SIGNING_KEY"] = str(getattr(settings, "SIMPLE_JWT", {}).get("SIGNING_KEY", ""))
    with suppress(Exception):
        from platforms import registry

        for name in dir(registry):
            if name.startswith("SANDBOX_") and any(w in name for w in ("SECRET", "TOKEN")):
                found[f"platforms.registry.{name}"] = str(getattr(registry, name))
    with suppress(Exception):
        from tests import conftest as root_conftest

        found["test user password"] = root_conftest.PASSWORD
    with suppress(Exception):
        from tests.webhooks import conftest as webhook_conftest

        for name in ("RELAY_SECRET", "RELAY_PREVIOUS_SECRET", "GOOGLE_KEY", "CRM_SIGNING_SECRET"):
            found[f"tests.webhooks.{name}"] = getattr(webhook_conftest, name)
    return {name: value for name, value in found.items() if len(value) >= MIN_SECRET_LENGTH}


@dataclass(frozen=True)
class Leak:
    test: str
    where: str  # logger name, or "captured output"
    kind: str  # what leaked: "raw email", "JWT", "secret SECRET_KEY", ...
    excerpt: str  # the line around the finding, with the value itself masked


@dataclass
class LogCollector:
    """Scans each line it is given; keeps what it found (never the raw values)."""

    secrets: dict[str, str] = field(default_factory=dict)
    leaks: list[Leak] = field(default_factory=list)
    lines_scanned: int = 0
    current_test: str = "(outside any test)"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def findings(self, line: str) -> Iterator[tuple[str, re.Match | str]]:
        for match in EMAIL.finditer(line):
            yield "raw email", match
        for kind, pattern in TOKEN_PATTERNS.items():
            for match in pattern.finditer(line):
                yield kind, match
        for name, value in self.secrets.items():
            if value in line:
                yield f"secret {name}", value

    def scan(self, line: str, *, where: str) -> list[Leak]:
        found = []
        for kind, hit in self.findings(line):
            value = hit.group(0) if isinstance(hit, re.Match) else hit
            start = max(0, line.find(value) - 60)
            excerpt = line[start : line.find(value) + len(value) + 60].replace(value, f"<{kind}>")
            found.append(Leak(test=self.current_test, where=where, kind=kind, excerpt=excerpt))
        with self._lock:
            self.lines_scanned += 1
            self.leaks.extend(found)
        return found

    def scan_record(self, record: logging.LogRecord, formatter: logging.Formatter) -> list[Leak]:
        try:
            line = formatter.format(record)
        except Exception:  # a record that cannot be formatted is still searched in its parts
            line = f"{record.msg!r} {record.args!r} {vars(record)!r}"
        return self.scan(line, where=record.name)

    def scan_captured(self, text: str, *, where: str = "captured output") -> None:
        """Only JSON log lines: a console email or a printed table is not a log line."""
        for raw in text.splitlines():
            line = raw.strip()
            if not (line.startswith("{") and '"level"' in line and '"logger"' in line):
                continue
            try:
                json.loads(line)
            except ValueError:
                continue
            self.scan(line, where=where)

    def report(self, limit: int = 50) -> str:
        by_kind: dict[tuple[str, str, str], list[Leak]] = {}
        for leak in self.leaks:
            by_kind.setdefault((leak.kind, leak.where, leak.test), []).append(leak)
        lines = [f"{len(self.leaks)} secret/token/email leak(s) in log lines ({self.lines_scanned} lines scanned):"]
        for (kind, where, test), leaks in list(by_kind.items())[:limit]:
            lines.append(f"  {kind} via {where} in {test} (x{len(leaks)}): {leaks[0].excerpt}")
        return "\n".join(lines)


def _formatter() -> logging.Formatter:
    try:
        from adsplatform.logging import JsonFormatter

        return JsonFormatter()
    except Exception:
        return logging.Formatter("%(name)s %(message)s")


_collector = LogCollector()
_original_call_handlers = logging.Logger.callHandlers


def _install(collector: LogCollector) -> None:
    """Tap Logger.callHandlers: every record any logger handles passes it once, whatever handlers,
    propagation or dictConfig a test or Django sets up later."""
    formatter = _formatter()

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        collector.scan_record(record, formatter)
        _original_call_handlers(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]


def _uninstall() -> None:
    logging.Logger.callHandlers = _original_call_handlers  # type: ignore[method-assign]


def pytest_sessionstart(session: pytest.Session) -> None:
    _collector.secrets = _settings_secrets()
    _install(_collector)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterable[object]:
    _collector.current_test = item.nodeid
    try:
        return (yield)
    finally:
        _collector.current_test = "(between tests)"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for _name, text in report.sections:
        if _name.startswith(("Captured stdout", "Captured stderr", "Captured log")):
            _collector.scan_captured(text, where=f"captured output ({report.when})")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _collector.leaks:
        terminalreporter.section("log guard", sep="=", red=True, bold=True)
        terminalreporter.line(_collector.report())
    else:
        terminalreporter.line(f"log guard: no secret, token or raw email in {_collector.lines_scanned} log lines")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _uninstall()
    if _collector.leaks and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def log_guard() -> LogCollector:
    """The session's collector: what every log line so far was checked against, and what leaked."""
    return _collector
