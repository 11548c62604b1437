# The two set-up commands are `make demo` and `make test`; everything else is a building block.
SHELL := /bin/bash
PY := .venv/bin/python
DEVSTACK := $(PY) -m scripts.devstack
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test test-containers test-unit up up-core down status lint images \
	compose-up compose-down compose-wipe compose-demo compose-images test-compose test-docker-runner engine-tidy

install:                  ## .venv with pinned packages + the MinIO server binary (built once, cached)
	@scripts/bootstrap.sh
	@scripts/build_minio.sh >/dev/null

up: install                ## MinIO + simulated Pis + Airflow (UI on 127.0.0.1:8080)
	$(DEVSTACK) up

up-core: install           ## MinIO + simulated Pis only (what the tests need)
	$(DEVSTACK) up --no-airflow

down:                      ## stop everything the project started
	@if [ -x $(PY) ]; then $(DEVSTACK) down; fi

status: install
	$(DEVSTACK) status

demo: install              ## start the stack, run the nightly DAG once through Airflow, print the summary
	$(PY) -m scripts.demo

test: install              ## unit + integration tests (and the browser test: chromium via apt); starts/stops services
	scripts/chromium.sh
	scripts/run_tests.sh -m "not containers and not compose"

test-containers: install   ## the containers tier (.ci/run): step image + arm64 Pi, then the compose stack
	scripts/engine.sh
	$(MAKE) images
	scripts/run_tests.sh --with-containers -m "containers and not slow"
	$(MAKE) test-compose; rc=$$?; $(MAKE) compose-wipe; $(MAKE) engine-tidy; exit $$rc

engine-tidy:               ## free the engine's disk the tier used: build cache and dangling layers (images stay)
	docker builder prune -af >/dev/null
	docker image prune -f >/dev/null
	@echo "engine: $$(docker system df --format '{{.Type}} {{.Size}}' | paste -sd' ' -)"

test-docker-runner: install  ## the nightly DAG with task_runner=docker on the dev stack (~12 min; not in .ci/run)
	scripts/engine.sh
	$(MAKE) images
	scripts/run_tests.sh --with-containers -m "containers and slow"

images: install            ## step image (edgeops/tasks:<code hash>) + emulated Pi image; cached in the engine
	scripts/images.sh all
	scripts/images.sh prune
	scripts/images/pi_arm64.sh

test-unit: install
	$(PY) -m pytest -m "not integration and not containers and not compose and not faults" -q

lint: install              ## ruff, and the layer contracts in pyproject.toml (import-linter)
	.venv/bin/ruff check dags plugins tasks tests scripts benchmarks
	.venv/bin/lint-imports
	.venv/bin/mkdocs build --strict -q        # docs/: a broken link or a page missing from nav fails

# --- the platform as containers (docker-compose.yml); never touches the process dev stack -------------------
compose-images: install    ## every image docker-compose.yml uses, built locally from the debootstrap base
	scripts/engine.sh
	scripts/build_minio.sh >/dev/null
	scripts/images.sh compose

compose-up: install        ## Compose v2 + images + `docker compose up` with 2 Celery workers (UI 127.0.0.1:18080)
	scripts/compose/up.sh

compose-demo:              ## one run through the REST API on the compose stack: summary + worker per task
	python3 scripts/compose/demo.py

compose-down:              ## stop the compose stack; named volumes (Postgres, MinIO, devices, keys) stay
	docker compose --profile arm64 --profile ml-queue down

compose-wipe:              ## stop it and delete its volumes (the tests' stack: the next checkout, with another .env, starts clean)
	docker compose --profile arm64 --profile ml-queue down -v --remove-orphans

test-compose: install      ## the containers tier on compose: tiny DAG via REST, 2 workers, pi1 + emulated arm64
	EDGEOPS_COMPOSE_PROFILES=arm64 scripts/compose/up.sh
	$(PY) -m pytest -q -rA -m compose tests/containers/test_compose_stack.py tests/containers/test_compose_worker_kill.py
