"""The operator commands of the integration layer, through both SDKs against the sandbox."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command


def _run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def test_check_platforms_says_ok_for_the_sandbox_accounts(sandbox):
    output = _run("check_platforms")
    assert "google ok: credentials work, 2 account(s) reached" in output
    assert "meta   ok: credentials work, 1 account(s) reached" in output
    assert "1234567890 ok" in output and "300000000000001 ok" in output


def test_check_platforms_names_a_credentials_problem(sandbox):
    sandbox.google.state.faults.auth = 1.0
    out = io.StringIO()
    with pytest.raises(CommandError, match="problem"):
        call_command("check_platforms", stdout=out)
    assert "google credentials problem" in out.getvalue()
    assert "meta   ok" in out.getvalue()


def test_check_platforms_names_an_unreachable_platform(sandbox, settings):
    settings.ADS_SANDBOX_META_PORT = 1  # nothing listens there
    from platforms.registry import reset_platforms

    reset_platforms()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check_platforms", "--platform", "meta", stdout=out)
    assert "meta   platform unreachable" in out.getvalue()


def test_show_platforms_prints_campaigns_and_yesterdays_metrics(sandbox):
    output = _run("show_platforms")
    assert "google 1234567890" in output and "meta 300000000000001" in output
    assert "Brand - Search" in output
    assert "impr" in output and "cost" in output
    assert "EUR" in output and "USD" in output


def test_the_sandbox_s_scale_comes_from_settings_so_make_run_can_set_it(settings):
    from platforms.management.commands.sandbox import Command

    settings.ADS_SANDBOX_CAMPAIGNS, settings.ADS_SANDBOX_DAYS = 10_000, 30
    options = Command().create_parser("manage.py", "sandbox").parse_args([])
    assert (options.campaigns, options.days) == (10_000, 30)
    settings.ADS_SANDBOX_CAMPAIGNS = 0  # the demo data set
    assert Command().create_parser("manage.py", "sandbox").parse_args(["--days", "7"]).campaigns == 0
