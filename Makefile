# Sundial: the README's verbs. `make up` and `make test` are the two that matter.
SHELL := /bin/bash
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := deploy/compose/compose.yaml
UV ?= uv

.PHONY: help up down logs run dev test test-unit lint format bench sync

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.env:
	cp .env.example .env

sync:
	$(UV) sync --frozen

up: .env  ## start the whole stack with Docker Compose
	$(COMPOSE) -f $(COMPOSE_FILE) --env-file .env up -d --build --wait

down:  ## stop the stack and remove its containers
	$(COMPOSE) -f $(COMPOSE_FILE) --env-file .env down --remove-orphans

logs:  ## follow the stack's logs
	$(COMPOSE) -f $(COMPOSE_FILE) --env-file .env logs -f --tail=100

run: sync  ## run one scheduler in the foreground (backend from SUNDIAL_BACKEND_URL)
	$(UV) run sundial-scheduler

dev: sync  ## api + scheduler without Docker, on the embedded SQLite default
	@mkdir -p var
	@trap 'kill 0' EXIT INT TERM; \
	SUNDIAL_LOG_FORMAT=console $(UV) run sundial-scheduler & \
	SUNDIAL_LOG_FORMAT=console $(UV) run uvicorn sundial_api.main:app --port 8000 & \
	wait

test: sync  ## the whole suite (real Postgres/Redis from SUNDIAL_TEST_*_URL, else testcontainers)
	$(UV) run pytest

test-unit: sync  ## unit tests only, no services
	$(UV) run pytest tests/unit

lint: sync  ## ruff, formatting and mypy --strict
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: sync
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

bench: sync  ## Sundial against plain APScheduler, side by side
	$(UV) run python -m benchmarks $(BENCH_ARGS)
