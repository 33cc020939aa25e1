"""Settings come from the environment: the embedded default with none, PostgreSQL/Redis with URLs."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
_PROBE = """
import json, django
from django.conf import settings
django.setup()
from adsplatform.celery import app
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": app.conf.broker_url,
    "always_eager": app.conf.task_always_eager,
    "debug": settings.DEBUG,
    "sandbox": settings.ADS_SANDBOX,
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
}))
"""


# Variables of the test process that a deployment would not have.
_NOT_DEPLOYED = ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")


def _settings_with(env: dict[str, str], tmp_path: Path) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in _NOT_DEPLOYED}
    clean.update({"DJANGO_SETTINGS_MODULE": "adsplatform.settings", "VAR_DIR": str(tmp_path / "var"), **env})
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_environment_gives_the_embedded_default(tmp_path):
    seen = _settings_with({}, tmp_path)
    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["db_name"].startswith(str(tmp_path / "var"))
    assert seen["cache"].endswith("FileBasedCache")  # shared by web and worker processes
    assert seen["broker"] == "filesystem://"  # a real broker that needs no server
    assert seen["always_eager"] is False
    assert seen["debug"] is False
    assert seen["sandbox"] is True  # no credentials: the emulators stand in
    assert (tmp_path / "var" / "secret_key").exists()


def test_the_example_environment_file_works_as_it_is(tmp_path):
    """`cp .env.example .env`: every line parses, comments stay comments, and an empty value is
    the default — not an empty database URL or an empty list."""
    example: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert "#" not in value, f"an inline comment would be read as the value: {line!r}"
            example[name] = value
    seen = _settings_with({**example, "VAR_DIR": str(tmp_path / "var")}, tmp_path)
    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["broker"] == "filesystem://"
    assert seen["sandbox"] is True


def test_database_and_redis_urls_switch_backends(tmp_path):
    seen = _settings_with(
        {"DATABASE_URL": "postgres://u:p@db.internal:5432/ads", "REDIS_URL": "redis://cache.internal:6379/1"},
        tmp_path,
    )
    assert seen["engine"] == "adsplatform.db.postgresql"  # Django's, with a cheaper health check
    assert seen["db_name"] == "ads"
    assert seen["cache"] == "adsplatform.cache.ResilientRedisCache"  # Django's RedisCache, failing soft
    assert seen["broker"] == "redis://cache.internal:6379/1"


def test_credentials_turn_the_sandbox_off_by_default(tmp_path):
    assert _settings_with({"GOOGLE_ADS_REFRESH_TOKEN": "x"}, tmp_path)["sandbox"] is False
    assert _settings_with({"GOOGLE_ADS_REFRESH_TOKEN": "x", "ADS_SANDBOX": "1"}, tmp_path)["sandbox"] is True


@pytest.mark.slow
def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in _NOT_DEPLOYED}
    env.update(
        {
            "VAR_DIR": str(tmp_path),
            "SECRET_KEY": secrets.token_urlsafe(64),
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "1",
            "ALLOWED_HOSTS": "ads.example.com",
            "METRICS_TOKEN": secrets.token_urlsafe(32),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # Without the TLS switch the same check must complain: it really checks something.
    env["SECURE_SSL_REDIRECT"] = "0"
    insecure = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert insecure.returncode != 0
    assert "SECURE_SSL_REDIRECT" in insecure.stderr + insecure.stdout
    # Without METRICS_TOKEN, /metrics would answer anyone: the deploy check refuses that too.
    env["SECURE_SSL_REDIRECT"] = "1"
    del env["METRICS_TOKEN"]
    open_metrics = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert open_metrics.returncode != 0
    assert "adsplatform.E002" in open_metrics.stderr + open_metrics.stdout
    # Secrets at rest need keys of their own, not one derived from SECRET_KEY.
    del env["FIELD_ENCRYPTION_KEYS"]
    derived_key = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "adsplatform.E003" in derived_key.stderr + derived_key.stdout
