# Every target sets itself up from nothing: a fresh clone needs only python3 (>= 3.11).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.drpilot-installed
# Debian packages the end-to-end tests and the sandbox use (real Alertmanager / Prometheus),
# chromium, which renders the run reports headless (tests/report, the README picture), and
# chromium-driver, through which selenium drives it for the console (tests/console/test_browser.py).
DEBIAN_PACKAGES := prometheus-alertmanager prometheus chromium chromium-driver

.PHONY: setup system-deps lint test demo bench bench-fleet constraints clean

$(STAMP): pyproject.toml twin/pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' -e ./twin
	touch $@

setup: $(STAMP) system-deps

system-deps:
	@bash scripts/debian-packages.sh $(DEBIAN_PACKAGES)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Both cores: a file's tests stay together on one worker (they may share a sandbox).
test: setup lint
	$(BIN)/pytest -n 2 --dist loadfile

demo: setup
	$(BIN)/drpilot demo

# BENCHMARKS.md: every section but two, under 20 minutes on two cores ...
bench: setup
	$(BIN)/python -m bench

# ... and those two, minutes each: 200 runbooks evacuated at once, a worker lost per phase.
bench-fleet: setup
	$(BIN)/python -m bench fleet

# Re-pin after changing pyproject.toml's ranges: the exact versions the tests ran with.
constraints: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v '^drpilot' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
