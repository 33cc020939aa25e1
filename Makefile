# The two Quickstart commands: `make run` and `make test`. Both work on a fresh machine
# (they create .venv and install what they need) and are safe to run twice.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench reliability screenshots clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

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
