#!/usr/bin/env bash
# `make compose-up`: everything docker-compose.yml needs, then the stack with 2 Celery workers, healthy.
#   engine (scripts/engine.sh) -> Compose v2 plugin (scripts/build_compose.sh) -> MinIO binary
#   (scripts/build_minio.sh) -> images (scripts/images.sh compose) -> docker compose up -d --wait
# Environment: EDGEOPS_COMPOSE_WORKERS (default 2), EDGEOPS_COMPOSE_PROFILES (e.g. arm64), plus the
# EDGEOPS_* variables of docker-compose.yml (ports, images). EDGEOPS_CODE_VERSION (the manifests'
# code_version) defaults to tasks.core.version.code_version() of this checkout: the git sha, "-dirty" with
# uncommitted edits, as the step image gets it; the images were built from this tree just before.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
workers="${EDGEOPS_COMPOSE_WORKERS:-2}"
say() { echo "compose-up: $*" >&2; }
t0=$SECONDS

scripts/engine.sh >/dev/null || { say "no container engine; see the output of scripts/engine.sh"; exit 1; }
scripts/build_compose.sh >/dev/null || { say "Compose v2 is missing and could not be built: scripts/build_compose.sh"; exit 1; }
scripts/build_minio.sh >/dev/null || { say "the MinIO binary (for the minio image) is missing: scripts/build_minio.sh"; exit 1; }
# shellcheck source=scripts/lib/engine_space.sh
. "$repo/scripts/lib/engine_space.sh"  # vfs: ~20-30 GB for the stack with 2 workers while it runs
ensure_free() { ensure_engine_space "$@" || exit 1; }  # ensure_free <GB> <for what>
# Secrets: .env (0600, git-ignored) is written at the first compose-up (scripts/compose/dotenv.py). Postgres and
# MinIO keep the credentials they were created with, so a new .env next to volumes made with other ones would
# lock Airflow out of its database: refuse, naming the fix.
if [ ! -f .env ]; then
  old=""
  for v in postgres-db minio-data; do
    docker volume inspect "edgeops_$v" >/dev/null 2>&1 && old="$old edgeops_$v"
  done
  if [ -n "$old" ]; then  # (`docker compose down -v` itself needs .env's variables)
    say "no .env, but volumes made with other credentials exist:$old. Put their .env back, or wipe the stack:" \
        "docker ps -aq --filter label=com.docker.compose.project=edgeops | xargs -r docker rm -f;" \
        "docker volume rm$old; then run this again"
    exit 1
  fi
  python3 -m scripts.compose.dotenv
fi
running=0; [ -n "$(docker compose ps -a -q 2>/dev/null)" ] && running=1
ensure_free 12 "building the images"
t_tools=$SECONDS
scripts/images.sh compose >&2
if [[ ",${EDGEOPS_COMPOSE_PROFILES:-}," == *",arm64,"* ]]; then
  scripts/images/pi_arm64.sh >&2
  scripts/images/pi_arm64_runtime.sh  # + the pinned device runtime (compose networks cannot reach PyPI)
fi
if [ "$running" = 1 ]; then ensure_free 15 "recreating the stack"; else ensure_free 25 "the stack"; fi
t_images=$SECONDS
say "tools $((t_tools - t0))s, images $((t_images - t_tools))s; starting the stack ($workers workers)"

export COMPOSE_PROFILES="${EDGEOPS_COMPOSE_PROFILES:-}"
py="$repo/.venv/bin/python"; [ -x "$py" ] || py=python3  # tasks/core/version.py needs only the standard library
EDGEOPS_CODE_VERSION="${EDGEOPS_CODE_VERSION:-$("$py" -c 'from tasks.core.version import code_version; print(code_version())')}"
export EDGEOPS_CODE_VERSION
say "code_version $EDGEOPS_CODE_VERSION"
if ! docker compose up -d --wait --wait-timeout "${EDGEOPS_COMPOSE_WAIT_S:-900}" --scale "airflow-worker=$workers"; then
  docker compose ps -a >&2 || true
  say "the stack did not become healthy; logs: docker compose logs <service>"
  exit 1
fi
say "stack healthy in $((SECONDS - t_images))s (total $((SECONDS - t0))s)"
docker compose ps --format 'table {{.Service}}\t{{.Name}}\t{{.Status}}\t{{.Ports}}'
cat <<MSG
Airflow UI     http://127.0.0.1:${EDGEOPS_AIRFLOW_PORT:-18080}   (login admin; password: python3 -m scripts.compose.dotenv password)
MinIO console  http://127.0.0.1:${EDGEOPS_MINIO_CONSOLE_PORT:-19001}   (root: EDGEOPS_MINIO_ROOT_USER/PASSWORD in .env)
Run the demo   make compose-demo
Stop           make compose-down   (named volumes stay; docker compose down -v wipes them)
MSG
