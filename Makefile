# The two Quickstart commands: `make run` and `make test`. Both work on a fresh machine
# (they create .venv and install what they need) and are safe to run twice.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench reliability screenshots clean lock upgrade

# Installs come from the lock files only: every package, transitive ones included, at the version
# and with the hashes `make lock` wrote, so two machines (and the image) get the same bytes.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

# Both files in one install: the dev lock names runtime packages it needs (at the runtime lock's
# versions), and pip checks the whole set together.
$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@

# requirements.in / requirements-dev.in name the direct dependencies; the .txt locks are compiled
# from them. `make lock` after editing an .in file (keeps every other pin), `make upgrade` to move
# every package to the newest release the .in files allow. The locks are resolved for the
# interpreter that compiles them, so that must be what production runs: CPython 3.11 on Linux.
# Index options stay out of the files (--no-emit-*): where packages come from is each machine's
# pip configuration. --strip-extras because requirements.txt is also a constraints file (-c).
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

lock upgrade: $(VENV)/.installed-dev
	$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11) and sys.platform == "linux", "compile the locks with CPython 3.11 on Linux"'
	$(PIP_COMPILE) $(if $(filter upgrade,$@),--upgrade) -o requirements.txt requirements.in
	$(PIP_COMPILE) $(if $(filter upgrade,$@),--upgrade) -o requirements-dev.txt requirements-dev.in

run: $(VENV)/.installed
	$(PY) scripts/run_platform.py

test: $(VENV)/.installed-dev
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest $(PYTEST_ARGS)

# Browser tests, then refresh the screenshots the README shows.
screenshots: $(VENV)/.installed-dev
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest tests/e2e -q
	mkdir -p docs/screenshots && cp var/screenshots/*.png docs/screenshots/

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.installed-dev
	$(PY) bench/run.py

# Fault scenarios (Redis outage, worker SIGKILL, replays, upload timeouts, PostgreSQL restart).
reliability: $(VENV)/.installed-dev
	$(PY) bench/reliability.py $(RELIABILITY_ARGS)

clean:
	rm -rf var/cache var/broker var/static var/prometheus
