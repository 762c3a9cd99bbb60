# Two commands matter: `make demo` and `make test`. Everything installs into .venv at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make up EXECUTOR=celery WORKERS=2 TRIGGERERS=2`: Airflow on Celery workers with a Redis broker.
EXECUTOR ?= local
WORKERS ?= 1
TRIGGERERS ?= 1
# The suite runs on pytest-xdist workers: TEST_WORKERS of them, at most one per CPU (-n logical). Each worker
# starts its own PostgreSQL, S3 server and emulator; the airflow_stack tests all run on one (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n logical --maxprocesses $(TEST_WORKERS) --dist loadgroup --durations=20

.PHONY: install test test-fast demo up down lint soak bench-upload bench-load bench-deferral bench-e2e bench-api bench-diff bench-events bench-ids clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --python $(PY) -q -r requirements.txt
	$(VENV)/bin/uv pip install --python $(PY) -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The fast lane: ruff and the unit tests (no services started), in about a minute.
test-fast: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests/unit $(PYTEST_PARALLEL) $(PYTEST_ARGS)

demo: install
	$(PY) -m aps_devstack demo

up: install
	$(PY) -m aps_devstack up --executor $(EXECUTOR) --workers $(WORKERS) --triggerers $(TRIGGERERS)

down:
	$(PY) -m aps_devstack down

# The code is laid out by hand (ruff check enforces the line length); `ruff format` is not the house style.
lint: install
	$(VENV)/bin/ruff check .

# The model-based test with random seeds for SOAK_MINUTES (default 30): examples per second, and any
# falsifying example with its seed (`python -m tests.model.soak --seed N -v` replays it).
soak: install
	SOAK_MINUTES=$${SOAK_MINUTES:-30} $(PY) -m tests.model.soak

bench-ids: install
	$(PY) bench/ids.py

bench-upload: install
	$(PY) bench/upload.py

bench-load: install
	$(PY) bench/load.py

bench-deferral: install
	$(PY) bench/deferral.py

bench-e2e: install
	$(PY) bench/e2e.py

bench-diff: install
	$(PY) bench/diff.py

bench-api: install
	$(PY) bench/api.py

# `make bench-events N=5` for a short one (default 50 files).
bench-events: install
	$(PY) bench/events.py $(if $(N),--n $(N))

clean:
	rm -rf .stack .pytest_cache
