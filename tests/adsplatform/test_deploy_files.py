"""What can be checked of the deployment files without Docker: they parse and agree with each other."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_fly_toml_names_web_worker_beat_and_monitor_and_checks_healthz():
    config = tomllib.loads((ROOT / "fly.toml").read_text())
    processes = config["processes"]
    assert set(processes) == {"web", "worker", "beat", "monitor"}
    assert processes["web"].startswith("gunicorn -c gunicorn.conf.py adsplatform.wsgi")
    assert "celery -A adsplatform worker" in processes["worker"]
    assert "celery -A adsplatform beat" in processes["beat"]
    # Beat's scheduler writes the heartbeat "beat has not run" is judged by.
    assert "--scheduler optimization.beat:HeartbeatScheduler" in processes["beat"]
    # The alerts are evaluated by a process of their own, not by the worker they watch.
    assert processes["monitor"] == "python manage.py alert_monitor"
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
    assert policies.get("monitor") == "always"
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


def _seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration).groups()
    return float(value) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def test_fly_checks_worker_and_beat_through_the_health_endpoint_they_run_behind():
    config = tomllib.loads((ROOT / "fly.toml").read_text())
    checked = {group: check for check in config["checks"].values() for group in check["processes"]}
    assert set(checked) == {"worker", "beat"}, "one check each, scoped to its process group"
    for group, check in checked.items():
        # Fly's top-level checks are requests to a port of the machine, never a command run in it.
        assert check["type"] == "http" and check["method"].lower() == "get" and check["path"] == "/healthz"
        argv = shlex.split(config["processes"][group])
        assert argv[:4] == ["python", "-m", "adsplatform.process_health", group], argv
        split = argv.index("--")
        own, command = argv[4:split], argv[split + 1 :]
        assert own[own.index("--port") + 1] == str(check["port"]), "the check asks the port the endpoint binds"
        assert check["port"] != config["http_service"]["internal_port"]
        assert command[:4] == ["celery", "-A", "adsplatform", group]
        # Longer than the probe's slowest honest answer (a 2 s Redis PING, a 3 s database connect),
        # shorter than the interval; the grace period covers a boot and the first heartbeat.
        assert 3 < _seconds(check["timeout"]) < _seconds(check["interval"])
        assert _seconds(check["grace_period"]) >= 30
    assert importlib.util.find_spec("adsplatform.process_health") is not None


def _dockerfile_stages() -> list[dict]:
    """Each FROM of the Dockerfile: its base, its name and its instructions (continuations joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append({"base": base.strip(), "name": name.strip(), "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword.upper(), rest.strip()))
    return stages


def test_dockerfile_builds_the_locked_venv_in_one_stage_and_runs_a_slim_one_as_non_root():
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    by_name = {stage["name"]: stage for stage in stages if stage["name"]}

    def root_image(stage: dict) -> str:
        return root_image(by_name[stage["base"]]) if stage["base"] in by_name else stage["base"]

    runtime = stages[-1]
    assert root_image(runtime) == "python:3.11-slim"
    builds = [s for s in stages if any(k == "RUN" and "pip install" in arg for k, arg in s["instructions"])]
    assert builds and runtime not in builds, "nothing is installed in the runtime stage"
    (build,) = builds
    installs = [arg for k, arg in build["instructions"] if k == "RUN" and "pip install" in arg]
    assert all("--require-hashes" in arg and re.search(r"-r \S*requirements\.txt\b", arg) for arg in installs)
    assert not any("requirements-dev" in arg or ".in" in arg.split() for _, arg in build["instructions"])
    venv = re.search(r"-m venv (\S+)", " ".join(arg for k, arg in build["instructions"] if k == "RUN")).group(1)
    # A virtualenv's scripts name their interpreter by path: copied to the same place, same base.
    assert ("COPY", f"--from={build['name']} {venv} {venv}") in runtime["instructions"]
    assert root_image(build) == root_image(runtime)
    env = " ".join(arg for k, arg in runtime["instructions"] if k == "ENV")
    assert re.search(rf"PATH={re.escape(venv)}/bin:", env), "fly.toml's python, gunicorn and celery are the venv's"
    keywords = [k for k, _ in runtime["instructions"]]
    users = [arg for k, arg in runtime["instructions"] if k == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}, "the processes run as a non-root user"
    collect = next(i for i, (k, arg) in enumerate(runtime["instructions"]) if k == "RUN" and "collectstatic" in arg)
    assert collect < keywords.index("USER") < keywords.index("CMD"), "static files collected at build, as root"


def test_dockerignore_keeps_what_the_image_needs_and_leaves_out_secrets_and_local_state():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)

    for needed in ("Dockerfile", "requirements.txt", "manage.py", "gunicorn.conf.py", "adsplatform/settings.py"):
        assert not ignored(needed), needed
    assert not ignored("adsplatform/process_health.py") and not ignored("templates")
    for local in (".env", ".git", ".venv", "var"):
        assert ignored(local), local


def test_make_run_starts_the_same_processes_as_fly():
    """scripts/run_platform.py supervises what fly.toml runs: beat with its heartbeat scheduler,
    and the alert monitor beside the worker."""
    script = (ROOT / "scripts" / "run_platform.py").read_text()
    assert '"optimization.beat:HeartbeatScheduler"' in script
    assert 'start("alert-monitor", _manage("alert_monitor"))' in script
    scheduler = tomllib.loads((ROOT / "fly.toml").read_text())["processes"]["beat"].split("--scheduler ")[1]
    module, _, name = scheduler.split()[0].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


# --- Locked dependencies -------------------------------------------------------------------------


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _direct(path: Path) -> dict[str, str]:
    """name -> version of an .in file's requirements (extras dropped, options and comments skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        assert version, f"{path.name}: {line} is not pinned exactly"
        pins[_normalize(name.split("[")[0])] = version.strip()
    return pins


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a lock file compiled with --generate-hashes."""
    text = path.read_text().replace("\\\n", " ")
    locked = {}
    for line in text.splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        assert version, f"{path.name}: {requirement} is not pinned exactly"
        locked[_normalize(name)] = (version, [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")])
    return locked


@pytest.mark.parametrize(
    ("source", "lock"), [("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")]
)
def test_lock_files_pin_every_direct_dependency_and_hash_every_package(source, lock):
    direct, locked = _direct(ROOT / source), _locked(ROOT / lock)
    assert direct and len(locked) > len(direct), "the lock holds the transitive dependencies too"
    for name, version in direct.items():
        assert name in locked, f"{name} is in {source} but not in {lock}: run `make lock`"
        assert locked[name][0] == version, f"{name}: {source} says {version}, {lock} {locked[name][0]}: run `make lock`"
    for name, (_version, hashes) in locked.items():
        # pip's --require-hashes refuses a package without one; sha256 is what pip-compile writes.
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    text = (ROOT / lock).read_text()
    # Where packages come from is each machine's pip configuration, not the lock's.
    assert not re.search(r"^--(index-url|extra-index-url|find-links|trusted-host)|file://", text, re.M)


def test_dev_lock_agrees_with_the_runtime_lock():
    assert "-c requirements.txt" in (ROOT / "requirements-dev.in").read_text().splitlines()
    runtime, dev = _locked(ROOT / "requirements.txt"), _locked(ROOT / "requirements-dev.txt")
    shared = set(runtime) & set(dev)
    assert shared, "the dev tools share some packages with the runtime (requests, PyYAML, ...)"
    # Tests run against the versions production runs.
    assert {name: dev[name][0] for name in shared} == {name: runtime[name][0] for name in shared}


def test_make_installs_only_from_the_locks_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install[^\n]*", makefile)
    assert installs and all("--require-hashes" in line for line in installs), installs
    assert not re.search(r"-r requirements(-dev)?\.in", makefile), "the .in files are compiled, never installed"
    assert re.search(r"^\$\(VENV\)/\.installed: requirements\.txt$", makefile, re.M)
    assert re.search(r"^\$\(VENV\)/\.installed-dev: requirements\.txt requirements-dev\.txt", makefile, re.M)
    assert re.search(r"^lock upgrade:", makefile, re.M) and "--generate-hashes" in makefile


def test_pre_commit_runs_upstream_ruff_hooks_at_the_dev_locks_ruff_version():
    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert all(repo["repo"] != "local" for repo in config["repos"]), "no hook runs from .venv"
    ruff = next(repo for repo in config["repos"] if repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit")
    # The hook, `make lint` and CI judge the code with the same ruff.
    assert ruff["rev"] == "v" + _locked(ROOT / "requirements-dev.txt")["ruff"][0]
    hooks = [hook["id"] for hook in ruff["hooks"]]
    assert hooks == ["ruff-check", "ruff-format"], "fixes first, then the format of what they changed"
    assert "--fix" in ruff["hooks"][0].get("args", [])


# --- Prometheus alerting rules --------------------------------------------------------------------

RULES_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Series Prometheus makes itself, not the app.
PROMETHEUS_OWN = {"up"}


def _rules() -> list[dict]:
    import yaml

    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exported_names(client) -> set[str]:
    """Every sample name /metrics serves (histogram _bucket/_count/_sum included)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").content.decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.django_db
def test_prometheus_rules_parse_and_name_only_metrics_the_app_exports(client):
    from campaigns.models import DailyMetric
    from campaigns.services import account_today
    from optimization import alerts
    from optimization.models import ProcessHeartbeat
    from tests.campaigns.factories import CampaignFactory

    # Rows behind every gauge, so that each is exported (some are left out when nothing is known).
    campaign = CampaignFactory(daily_budget_micros=100_000_000)
    DailyMetric.objects.create(campaign=campaign, date=account_today(campaign.account), cost_micros=50_000_000)
    alerts.process_heartbeat(ProcessHeartbeat.MONITOR, started=True)
    alerts.process_heartbeat(ProcessHeartbeat.BEAT, started=True)
    exported = _exported_names(client)
    # The lead-delay rule counts leads above the 5-minute bucket: that bucket must exist as written.
    assert 'ads_webhook_lag_seconds_bucket{le="300.0"}' in client.get("/metrics").content.decode()

    rules = _rules()
    assert len({rule["alert"] for rule in rules}) == len(rules), "alert names are unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*(?:[{\[><=!]|$|\)|\s+and\b))", rule["expr"]))
        names -= {"and", "or", "unless", "sum", "increase", "rate", "by", "on", "le", "job"}
        assert names, (rule["alert"], rule["expr"])
        unknown = names - exported - PROMETHEUS_OWN
        assert not unknown, f"{rule['alert']}: /metrics exports no {sorted(unknown)}"


def test_prometheus_rules_cover_every_alert_kind_with_the_apps_thresholds():
    from optimization import alerts
    from optimization.conf import setting
    from optimization.models import Alert

    rules = {rule["alert"]: rule for rule in _rules()}
    kinds = {rule["labels"].get("alert_kind") for rule in rules.values()} - {None}
    assert kinds == set(Alert.Kind.values), "every alert the app raises has a Prometheus rule, and no other"

    def threshold(name: str) -> float:
        return float(re.search(r"> (\d+(?:\.\d+)?)", rules[name]["expr"]).group(1))

    assert threshold("AdsBudgetDailyOverspend") == float(setting("ALERT_DAILY_OVERSPEND_RATIO")) == 1.10
    assert threshold("AdsPlatformApiErrors") == setting("ALERT_API_ERROR_RATE") == 0.05
    assert f">= {setting('ALERT_API_MIN_CALLS')}" in rules["AdsPlatformApiErrors"]["expr"]
    assert threshold("AdsWebhookDelay") == setting("ALERT_WEBHOOK_DELAY_SECONDS") == 300
    assert 'le="300.0"' in rules["AdsLeadProcessingDelay"]["expr"]
    assert f"[{setting('ALERT_API_WINDOW_MINUTES')}m]" in rules["AdsLeadProcessingDelay"]["expr"]
    assert threshold("AdsWorkersNotTakingTasks") == alerts.tunable("ALERT_WORKER_STALE_SECONDS")
    assert threshold("AdsBeatNotRunning") == alerts.tunable("ALERT_BEAT_STALE_SECONDS")
    assert threshold("AdsAlertMonitorNotRunning") == alerts.tunable("ALERT_MONITOR_STALE_SECONDS")


def test_no_runtime_file_of_a_local_run_is_tracked():
    """The file-system broker's exchange, SQLite files and var/ belong to a run, not to the repository."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        [git, "ls-files", "--", "control/*", "var/*", "*.sqlite3", "*.exchange"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == []
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert {"/control/", "var/"} <= ignored  # so a run's files never show up to be committed
