"""The log guard finds what it must and leaves hashes and ids alone."""

from __future__ import annotations

import hashlib
import logging

from rest_framework_simplejwt.tokens import RefreshToken

from tests.log_guard import LogCollector


def kinds(collector: LogCollector, line: str) -> set[str]:
    return {leak.kind for leak in collector.scan(line, where="test")}


def test_raw_email_is_found_and_its_hash_is_not():
    collector = LogCollector()
    assert kinds(collector, '{"message": "lead from Jane.Doe+ads@Example.co.uk"}') == {"raw email"}
    digest = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert kinds(collector, f'{{"message": "hashed {digest}", "from": "ads-platform@localhost"}}') == set()


def test_tokens_and_configured_secrets_are_found(user):
    collector = LogCollector(secrets={"WEBHOOK_SECRET": "relay-secret-0123456789"})
    access = str(RefreshToken.for_user(user).access_token)
    assert "JWT" in kinds(collector, f"refreshed {access}")
    assert "bearer token" in kinds(collector, "Authorization: Bearer abcdefghijklmnopqrstuvwxyz")
    assert kinds(collector, "header x-webhook-secret=relay-secret-0123456789") == {"secret WEBHOOK_SECRET"}
    assert "Standard Webhooks secret" in kinds(collector, "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert "service API key" in kinds(collector, "key ibvi_sk_0123456789abcdefghij")


def test_findings_never_keep_the_value():
    collector = LogCollector()
    (leak,) = collector.scan("sent to someone@example.org today", where="test")
    assert "someone@example.org" not in leak.excerpt
    assert "<raw email>" in leak.excerpt


def test_only_json_log_lines_of_captured_output_are_scanned():
    collector = LogCollector()
    collector.scan_captured("Email: printed@example.org\n{not json")
    assert collector.leaks == []
    collector.scan_captured('{"level": "INFO", "logger": "x", "message": "to logged@example.org"}')
    assert [leak.kind for leak in collector.leaks] == ["raw email"]


def test_the_session_guard_sees_every_logger(log_guard):
    """Installed for the whole run: a record from any logger, propagating or not, is scanned."""
    before = log_guard.lines_scanned
    isolated = logging.getLogger("log_guard.self_test")
    isolated.propagate = False
    isolated.warning("a harmless line")
    logging.getLogger("django").warning("another harmless line")
    assert log_guard.lines_scanned >= before + 2
