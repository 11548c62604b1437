# Airflow 3.3 images of the compose stack (docker-compose.yml), built by `scripts/images.sh airflow` on the
# debootstrap base (no registry): the project's constraints, the Celery provider, psycopg2 for Postgres.
#
#   --target airflow   api-server, scheduler, dag-processor, triggerer, init jobs: Airflow + providers, the
#                      project's dags/plugins/scripts/tasks/config in /opt/edgeops, NO TensorFlow.
#   --target worker    the Celery worker: the same plus the step dependencies (TensorFlow, LiteRT, ...), so ML
#                      steps run with task_runner=local inside it.
#
# Context: a directory assembled by scripts/images.sh (the code directories and pyproject/constraints only).
# No `# syntax` line (it would pull a frontend image); the engine's built-in BuildKit frontend has RUN --mount.
# vfs keeps a full copy of the filesystem per layer, so every stage is one RUN.
ARG BASE_IMAGE=edgeops/base:bookworm-amd64
FROM ${BASE_IMAGE} AS deps

ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG AIRFLOW_UID=50000
ENV PATH=/opt/edgeops/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 \
    AIRFLOW_HOME=/opt/airflow PYTHONPATH=/opt/edgeops \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/edgeops/dags AIRFLOW__CORE__PLUGINS_FOLDER=/opt/edgeops/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
WORKDIR /opt/airflow
# Airflow + its providers from the project's pyproject extra, under the project's constraints. The wheels live
# in a BuildKit cache mount used as a wheelhouse (same as docker/tasks.Dockerfile: pip's HTTP cache stores
# nothing behind this machine's proxy). docker/airflow-constraints.txt pins the Celery/Postgres additions.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=pyproject.toml,target=/tmp/in/pyproject.toml \
    --mount=type=bind,source=constraints.txt,target=/tmp/in/constraints.txt \
    --mount=type=bind,source=docker/airflow-constraints.txt,target=/tmp/in/airflow-constraints.txt \
    set -eu; \
    useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /opt/airflow --no-create-home --shell /bin/bash airflow; \
    mkdir -p /opt/airflow/logs /opt/edgeops; chown -R "${AIRFLOW_UID}:0" /opt/airflow; chmod -R g+rwX /opt/airflow; \
    python3 -m venv /opt/edgeops/venv; \
    wheels=/root/.cache/pip/wheelhouse; mkdir -p "$wheels"; \
    pip download -q -d "$wheels" "pip==${PIP_VERSION}"; \
    pip install -q --no-index --find-links "$wheels" "pip==${PIP_VERSION}"; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/in/pyproject.toml", "rb"))["project"]["optional-dependencies"]["airflow"]))' \
        > /opt/edgeops/requirements-airflow.txt; \
    printf '%s\n' apache-airflow-providers-celery psycopg2-binary asyncpg "setuptools==${SETUPTOOLS_VERSION}" \
        >> /opt/edgeops/requirements-airflow.txt; \
    { grep -v '^soupsieve==' /tmp/in/constraints.txt; cat /tmp/in/airflow-constraints.txt; } > /opt/edgeops/constraints.txt; \
    pip download --progress-bar off -d "$wheels" -c /opt/edgeops/constraints.txt -r /opt/edgeops/requirements-airflow.txt \
        | grep -v '^ *\(Collecting\|Downloading\|Using cached\|File was already\|Saved\)' || true; \
    pip install -q --no-index --find-links "$wheels" -c /opt/edgeops/constraints.txt -r /opt/edgeops/requirements-airflow.txt

FROM deps AS deps-worker
# The step dependencies (the project's core dependencies: TensorFlow, LiteRT, scikit-learn, ...).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=pyproject.toml,target=/tmp/in/pyproject.toml \
    set -eu; wheels=/root/.cache/pip/wheelhouse; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/in/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /opt/edgeops/requirements-steps.txt; \
    pip download -q -d "$wheels" -c /opt/edgeops/constraints.txt -r /opt/edgeops/requirements-steps.txt; \
    pip install -q --no-index --find-links "$wheels" -c /opt/edgeops/constraints.txt \
        -r /opt/edgeops/requirements-airflow.txt -r /opt/edgeops/requirements-steps.txt; \
    pip check

# The code (last, cheap): the project tree the DAG folder, plugins and init jobs use. PYTHONPATH=/opt/edgeops
# makes `python -m tasks.cli` (the local runner) and `python -m scripts.compose` work.
# The build parses every DAG file and the UI plugin here, without the step dependencies: a module-level import
# of numpy or TensorFlow fails the build instead of showing up as an import error in the running stack.
FROM deps AS airflow
RUN --mount=type=bind,target=/tmp/src \
    set -eu; cp -a /tmp/src/. /opt/edgeops/; \
    PYTHONPATH=/opt/edgeops:/opt/edgeops/plugins python -c 'import airflow.providers.celery, psycopg2, asyncpg, edgeops_airflow, edgeops_ui'; \
    home=$(mktemp -d); AIRFLOW_HOME="$home" PYTHONPATH=/opt/edgeops:/opt/edgeops/plugins \
        python -c 'import glob, runpy; [runpy.run_path(f) for f in sorted(glob.glob("/opt/edgeops/dags/*.py"))]'; \
    rm -rf "$home"
USER airflow

# edgeops-step: the unprivileged user the local runner drops each step to (the worker runs as root for that;
# plugins/edgeops_airflow/runners/step_user.py). Its own group, never 0: it reads no /secrets and no /keys.
FROM deps-worker AS worker
RUN --mount=type=bind,target=/tmp/src \
    set -eu; cp -a /tmp/src/. /opt/edgeops/; \
    useradd --system --uid 50001 --user-group --create-home --home-dir /home/edgeops-step \
        --shell /usr/sbin/nologin edgeops-step; chmod 0700 /home/edgeops-step; \
    PYTHONPATH=/opt/edgeops:/opt/edgeops/plugins python -c 'import airflow.providers.celery, tasks.cli, tensorflow, ai_edge_litert, edgeops_airflow'
USER airflow
