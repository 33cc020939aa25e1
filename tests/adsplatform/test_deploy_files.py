"""What can be checked of the deployment files without Docker: they parse and agree with each other."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fly_toml_names_web_worker_and_beat_and_checks_healthz():
    config = tomllib.loads((ROOT / "fly.toml").read_text())
    processes = config["processes"]
    assert set(processes) == {"web", "worker", "beat"}
    assert processes["web"].startswith("gunicorn -c gunicorn.conf.py adsplatform.wsgi")
    assert "celery -A adsplatform worker" in processes["worker"]
    assert "celery -A adsplatform beat" in processes["beat"]
    assert "migrate" in config["deploy"]["release_command"]
    service = config["http_service"]
    assert service["processes"] == ["web"]
    assert service["checks"][0]["path"] == "/healthz"


def test_fly_restarts_worker_and_beat_whatever_their_exit():
    config = tomllib.loads((ROOT / "fly.toml").read_text())
    policies = {process: rule["policy"] for rule in config.get("restart", []) for process in rule["processes"]}
    # Fly's default (on-fail) stops restarting after ten exits and leaves the machine stopped.
    assert policies.get("worker") == "always"
    assert policies.get("beat") == "always"
    assert set(policies) <= set(config["processes"])


def test_gunicorn_workers_accept_every_connection_the_fly_proxy_may_open():
    config = tomllib.loads((ROOT / "fly.toml").read_text())
    workers = int(config["env"]["WEB_CONCURRENCY"])
    per_worker = int(config["env"]["GUNICORN_WORKER_CONNECTIONS"])
    # Otherwise connections the proxy opened would wait in the backlog for a worker's slot.
    assert workers * per_worker > config["http_service"]["concurrency"]["hard_limit"]


def test_gunicorn_config_imports_and_sets_the_multiprocess_metrics_folder(monkeypatch):
    # setenv first so that undoing puts back "unset": the config's os.environ.setdefault would
    # otherwise outlive this test and point later subprocesses at a folder nobody created.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.workers >= 1
    assert module.bind.endswith(":8000") or module.bind.split(":")[-1].isdigit()
    assert callable(module.child_exit) and callable(module.on_starting)
    assert callable(module.post_worker_init)  # freezes the imported objects out of the collector's way
    assert callable(module.worker_exit)  # publishes the lead ids still queued


def test_dockerfile_runs_what_the_readme_and_fly_toml_document():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER app$", dockerfile, re.M), "runs as a non-root user"
    assert "collectstatic" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    cmd = re.search(r"^CMD \[(.+)\]$", dockerfile, re.M).group(1)
    command = " ".join(part.strip().strip('"') for part in cmd.split(","))
    fly_web = tomllib.loads((ROOT / "fly.toml").read_text())["processes"]["web"]
    assert command == fly_web
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "gunicorn.conf.py" in readme
