# trackier-offer-sync: `make demo` runs one real sync, `make test` runs every test.
# Everything lives in .venv/ at the repository root; the first call creates it (about 90 s).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
SIZES ?= 1k,10k,100k
PYTEST_ARGS ?=

.PHONY: help install lock demo test test-fast lint format bench browser clean

help:
	@echo "make demo   - run one real sync through Airflow against a fake Trackier (no account needed)"
	@echo "make test   - lint and run the whole test suite (real PostgreSQL, real HTTP, real Airflow)"
	@echo "make test-fast - the tiers without Airflow: tests/unit, tests/db, tests/deployment, tests/fake"
	@echo "make format - ruff format, then the fixable lint rules"
	@echo "make bench  - benchmark 1k/10k/100k offers against dlt and a hand-written loop (SIZES=1m for 1M)"

# requirements.txt is what the image needs at run time, requirements-dev.txt the tools only
# development needs; requirements.lock pins everything requirements.txt pulls in (see `make lock`).
$(STAMP): requirements.txt requirements-dev.txt requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c requirements.lock
	touch $(STAMP)

install: $(STAMP)

# After changing a pin in requirements.txt: install without the old lock (pip keeps every installed
# version that still fits), run the tests, and write the new lock from what is installed.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) scripts/lock_requirements.py

demo: install
	$(PY) -m devtools.demo $(ARGS)

# The browser test drives Debian's Chromium; install it when missing and we are allowed to.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; }

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

# What a test costs is the folder it stands in: these tiers need PostgreSQL but no Airflow.
test-fast: install lint
	$(PY) -m pytest tests/unit tests/db tests/deployment tests/fake $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.run --sizes $(SIZES)

clean:
	rm -rf .demo .pytest_cache .ruff_cache bench/out
