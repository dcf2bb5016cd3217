# Sundial: the README's verbs. `make up` and `make test` are the two that matter.
SHELL := /bin/bash
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := deploy/compose/compose.yaml
# uv from the PATH, else one that `make` installs into var/tools on first use, so that a
# machine with only Python (and Docker, for the stack and the tests) can run every verb.
UV_VERSION ?= 0.13.9
UV ?= $(or $(shell command -v uv 2>/dev/null),var/tools/bin/uv)
# `make test` runs the suite in this many processes: the integration and end-to-end tests
# one after another in one of them, the unit tests beside them.
TEST_WORKERS ?= 2

# The stack: `make up BACKEND=redis` for the Redis-backed variant, PUBLISH_BACKENDS=1 to
# reach Postgres/Redis from the host; PROJECT, ENV_FILE and COMPOSE_OVERRIDE (an extra
# compose file) let the smoke test run a stack of its own.
PROJECT ?= sundial
ENV_FILE ?= .env
BACKEND ?= postgres
PUBLISH_BACKENDS ?=
COMPOSE_OVERRIDE ?=
UP_TIMEOUT ?= 300
COMPOSE_FILES = $(COMPOSE_FILE) $(if $(filter 1 true yes,$(PUBLISH_BACKENDS)),deploy/compose/backends-on-host.yaml) $(COMPOSE_OVERRIDE)
PROFILES =
ifeq ($(BACKEND),redis)
PROFILES += redis
# the Redis URL with the stack's own password, as $(ENV_FILE) has it (read when used, once
# the file exists)
export SUNDIAL_BACKEND_URL = $(shell sed -n 's/^REDIS_BACKEND_URL=//p' $(ENV_FILE))
else ifneq ($(BACKEND),postgres)
$(error BACKEND must be postgres or redis, not '$(BACKEND)')
endif
STACK = $(COMPOSE) -p $(PROJECT) $(addprefix -f ,$(COMPOSE_FILES)) --env-file $(ENV_FILE) $(addprefix --profile ,$(PROFILES))

.PHONY: help up down logs run dev test test-unit smoke lint format bench sync

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# A missing env file is written from .env.example with secrets of its own; an existing
# one is left alone.
$(ENV_FILE):
	python3 deploy/compose/init-env.py --example .env.example $@

var/tools/bin/uv:
	@echo "uv is not on the PATH: installing uv $(UV_VERSION) into var/tools"
	python3 -m venv var/tools
	var/tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

sync: $(filter var/tools/bin/uv,$(UV))
	$(UV) sync --frozen

up: $(ENV_FILE)  ## start the whole stack with Docker Compose and wait until it is healthy
	@python3 deploy/compose/preflight.py --project $(PROJECT) --env-file $(ENV_FILE) $(addprefix --profile ,$(PROFILES)) $(COMPOSE_FILES)
	$(STACK) up -d --build --remove-orphans
	@deploy/compose/wait-healthy.sh $(UP_TIMEOUT) $(STACK)
	@printf '%s\n' "Sundial is up:" \
	  "  Web UI        http://localhost:$${API_PORT:-8000}/ui" \
	  "  API docs      http://localhost:$${API_PORT:-8000}/docs" \
	  "  Runbook       http://localhost:$${API_PORT:-8000}/runbook" \
	  "  Grafana       http://localhost:$${GRAFANA_PORT:-3000}/d/sundial-overview" \
	  "  Prometheus    http://localhost:$${PROMETHEUS_PORT:-9090}" \
	  "  Alertmanager  http://localhost:$${ALERTMANAGER_PORT:-9093}" \
	  "  Mailpit       http://localhost:$${MAILPIT_PORT:-8025}"

down: $(ENV_FILE)  ## stop the stack and remove its containers (data volumes stay; DOWN_ARGS=--volumes drops them)
	$(STACK) --profile redis --profile dev down --remove-orphans $(DOWN_ARGS)

logs: $(ENV_FILE)  ## follow the stack's logs (SERVICES="scheduler api" for some)
	$(STACK) logs -f --tail=100 $(SERVICES)

run: sync  ## run one scheduler in the foreground (backend from SUNDIAL_BACKEND_URL)
	$(UV) run sundial-scheduler

# `make dev` opts into the example jobs (a real install lists its own modules);
# SUNDIAL_JOB_MODULES from the environment wins.
DEV_JOB_MODULES ?= sundial_scheduler.jobs.examples

dev: sync  ## api + scheduler without Docker, on the embedded SQLite default, with the example jobs
	@mkdir -p var
	@SUNDIAL_LOG_FORMAT=console SUNDIAL_JOB_MODULES=$${SUNDIAL_JOB_MODULES:-$(DEV_JOB_MODULES)} \
	  $(UV) run sundial-scheduler & scheduler=$$!; \
	SUNDIAL_LOG_FORMAT=console $(UV) run uvicorn --factory sundial_api.main:create_app --port 8000 & api=$$!; \
	trap 'kill -TERM $$scheduler $$api 2>/dev/null; wait' INT TERM; \
	wait

test: sync  ## the whole suite (needs Docker; real Postgres/Redis from SUNDIAL_TEST_*_URL, else testcontainers)
	@$(UV) run python tests/preflight.py
	$(UV) run pytest -n $(TEST_WORKERS)

test-unit: sync  ## unit tests only, no services
	$(UV) run pytest tests/unit

.PHONY: chaos
chaos: sync  ## kill leaders (and workers and leaders) again and again for 150 s, per backend
	SUNDIAL_CHAOS_SECONDS=150 $(UV) run pytest -s tests/e2e/test_failover.py \
	  "tests/e2e/test_workers.py::test_killing_workers_and_leaders_never_runs_an_attempt_twice"

smoke: sync  ## `make up`, jobs run, targets up, an alert delivered, `make down` (needs Docker)
	$(UV) run pytest tests/smoke -m smoke --durations=0

lint: sync  ## ruff, formatting and mypy --strict
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: sync
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

bench: sync  ## Sundial against plain APScheduler, side by side
	$(UV) run python -m benchmarks $(BENCH_ARGS)
