#!/usr/bin/env bash
# Build the container images of the ML steps, with no image registry (docker pull cannot work here):
#
#   scripts/images.sh base        debootstrap a minimal Debian bookworm (python3 3.11, venv, pip, CA certs),
#                                 the local stand-in for python:3.11-slim-bookworm, and `docker import` it as
#                                 edgeops/base:bookworm-amd64. The rootfs tarball is cached under
#                                 ${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/images/; skipped when the image exists.
#   scripts/images.sh tasks       docker build docker/tasks.Dockerfile on that base, tagged
#                                 edgeops/tasks:<tasks.core.version.source_hash()>; skipped when the tag exists.
#   scripts/images.sh all         base, then tasks.
#   scripts/images.sh prune       untag edgeops/tasks images other than the current tag (vfs keeps a full
#                                 copy of the filesystem per layer, so stale images cost GBs each; the
#                                 build cache stays: `docker builder prune` frees it, wheelhouse included).
#   scripts/images.sh --print-tag print the tasks image tag of the current sources and exit.
#   scripts/images.sh services    the compose stack's infrastructure (docker/services.Dockerfile on the base):
#                                 edgeops/postgres:15, edgeops/redis:7, edgeops/minio:<pinned>, edgeops/device:bookworm
#   scripts/images.sh airflow     docker/airflow.Dockerfile: edgeops/airflow and edgeops/airflow-worker (+TF),
#                                 tagged <compose code hash> and :latest (what docker-compose.yml uses)
#   scripts/images.sh compose     base, services, airflow: every image docker-compose.yml needs.
#
# Every build uses host networking (the engine runs with --bridge=none). Needs a reachable engine
# (scripts/engine.sh starts one) and root for debootstrap. Logs go to .devstack/logs/.
#
# Environment: EDGEOPS_CACHE (cache root), EDGEOPS_DEBIAN_MIRROR (default: the host's apt mirror for
# bookworm), DOCKER (the docker CLI; default /usr/bin/docker, Debian's docker.io 20.10 client, which builds
# with BuildKit natively: the Dockerfile's RUN --mount needs BuildKit, and a newer CLI without the buildx
# plugin refuses DOCKER_BUILDKIT=1).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/images"
logs="$repo/.devstack/logs"
BASE_IMAGE="edgeops/base:bookworm-amd64"
SUITE="bookworm"
CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
PY="$repo/.venv/bin/python"

die() { echo "images: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/engine_space.sh
. "$repo/scripts/lib/engine_space.sh"
say() { echo "images: $*" >&2; }

# The Debian docker.io CLI (/usr/bin/docker, 20.10) speaks BuildKit natively; a newer CLI found first on
# PATH (e.g. /usr/local/bin/docker 28.x) only does BuildKit through the buildx plugin, which may be absent.
docker_cli() {
  if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return; fi
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker || echo docker; fi
}
DOCKER_BIN="$(docker_cli)"
dk() { "$DOCKER_BIN" "$@"; }

need_engine() {
  command -v "$DOCKER_BIN" >/dev/null 2>&1 || die "no docker CLI found; run scripts/engine.sh"
  dk info >/dev/null 2>&1 || die "container engine unreachable ($DOCKER_BIN info failed); run scripts/engine.sh"
}

image_exists() { dk image inspect "$1" >/dev/null 2>&1; }

# --- base ----------------------------------------------------------------------------------------------

# First mirror URI the host's apt uses for the plain suite (not -security/-updates), from the deb822
# *.sources files and the one-line sources.list format.
host_mirror() {
  local f uri="" suites="" line
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=""; suites=""
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        URIs:*) uri="$(echo "${line#URIs:}" | awk '{print $1}')" ;;
        Suites:*) suites=" ${line#Suites:} " ;;
        "") if [ -n "$uri" ] && [[ "$suites" == *" $SUITE "* ]]; then echo "$uri"; return; fi
            uri=""; suites="" ;;
      esac
    done <"$f"
    if [ -n "$uri" ] && [[ "$suites" == *" $SUITE "* ]]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    uri="$(sed -E 's/\[[^]]*\]//' "$f" | awk -v s="$SUITE" '$1 == "deb" && $3 == s { print $2; exit }')"
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

# Unmount whatever debootstrap left mounted under $1 (it mounts proc/sys while installing), then delete it.
remove_rootfs() {
  local dir="$1" mnt
  [ -d "$dir" ] || return 0
  while read -r mnt; do
    [ -n "$mnt" ] && umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

build_rootfs() {
  local tarball="$1" mirror rootfs log
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing; run scripts/engine.sh (it installs it)"
  [ -s "$CA_BUNDLE" ] || die "host CA bundle $CA_BUNDLE missing"
  mirror="${EDGEOPS_DEBIAN_MIRROR:-$(host_mirror)}"
  mkdir -p "$cache" "$logs"
  log="$logs/debootstrap.log"
  rm -f "$logs/debootstrap-inner.log"
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  # shellcheck disable=SC2064
  trap "remove_rootfs '$rootfs'" EXIT
  say "debootstrap $SUITE from $mirror into $rootfs (log $log)"
  if ! debootstrap --variant=minbase --arch=amd64 \
      --include=python3,python3-venv,python3-pip,ca-certificates \
      "$SUITE" "$rootfs" "$mirror" >"$log" 2>&1; then
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && cp "$rootfs/debootstrap/debootstrap.log" "$logs/debootstrap-inner.log"
    echo "images: debootstrap failed; last lines of $log:" >&2
    tail -n 15 "$log" >&2 || true
    [ -f "$logs/debootstrap-inner.log" ] && echo "images: debootstrap's own log: $logs/debootstrap-inner.log" >&2
    exit 1
  fi
  chmod 0755 "$rootfs"  # mktemp -d made it 0700, and tar records it as the image's /
  # The host bundle includes any CA the host needs to reach PyPI; pip in the image trusts it via PIP_CERT.
  # Also as a local CA so that update-ca-certificates (e.g. an apt-get install later) keeps it.
  cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/edgeops-host-bundle.crt"
  # Slim it like the official slim images: no apt lists/caches, logs, man pages, host identity files.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/*.log \
         "$rootfs"/var/log/apt/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* \
         "$rootfs"/debootstrap
  : >"$rootfs/etc/resolv.conf"; : >"$rootfs/etc/hostname"
  tar --numeric-owner --one-file-system -C "$rootfs" \
      --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$tarball.tmp" . \
    || die "tar of the rootfs failed"
  mv "$tarball.tmp" "$tarball"
  echo "$mirror" >"$tarball.mirror"
  remove_rootfs "$rootfs"
  trap - EXIT
  say "rootfs cached: $tarball ($(du -h "$tarball" | cut -f1))"
}

cmd_base() {
  need_engine
  if image_exists "$BASE_IMAGE"; then say "$BASE_IMAGE present; skipping"; return; fi
  local tarball="$cache/$SUITE-amd64-minbase.tar" mirror
  if [ -s "$tarball" ]; then say "using cached rootfs $tarball"; else build_rootfs "$tarball"; fi
  mirror="$(cat "$tarball.mirror" 2>/dev/null || echo unknown)"
  dk import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PIP_CERT=$CA_BUNDLE" \
    --change "ENV PIP_DEFAULT_TIMEOUT=180" \
    --change "ENV PIP_DISABLE_PIP_VERSION_CHECK=1" \
    --change "LABEL org.edgeops.base=debootstrap-$SUITE-minbase org.edgeops.debian-mirror=$mirror" \
    --change 'CMD ["python3"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null || die "docker import of $tarball failed"
  # Smoke test as an unprivileged user (the step image runs as one).
  if ! dk run --rm --network host --user 65534:65534 "$BASE_IMAGE" python3 -c 'import ensurepip, ssl, venv' >/dev/null 2>&1; then
    dk image rm "$BASE_IMAGE" >/dev/null 2>&1 || true
    die "$BASE_IMAGE does not run python3 as a non-root user; removed it. Delete $tarball and retry"
  fi
  say "imported $BASE_IMAGE ($(dk image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# --- tasks ---------------------------------------------------------------------------------------------

tag_and_hash() {
  [ -x "$PY" ] || die "$PY missing; run make install"
  (cd "$repo" && "$PY" -c 'from tasks.core.version import image_tag, source_hash, code_version
print(image_tag(), source_hash(), code_version())')
}

cmd_tasks() {
  need_engine
  local tag hash version log
  read -r tag hash version < <(tag_and_hash)
  [ -n "${hash:-}" ] || die "could not compute the source hash (tasks.core.version)"
  if image_exists "$tag"; then say "$tag present; skipping"; echo "$tag"; return; fi
  image_exists "$BASE_IMAGE" || die "$BASE_IMAGE missing; run: scripts/images.sh base (or all)"
  ensure_engine_space 10 "building $tag" || exit 1  # ~3 GB image, ~2 copies of it on vfs while it builds
  mkdir -p "$logs"
  log="$logs/images-tasks.log"
  local -a args=(build --network host -f docker/tasks.Dockerfile
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "SOURCE_HASH=$hash" --build-arg "CODE_VERSION=$version"
    --secret "id=ca_bundle,src=$CA_BUNDLE" -t "$tag" .)
  say "building $tag (BuildKit, $DOCKER_BIN, code $version; log $log)"
  if ! (cd "$repo" && DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain dk "${args[@]}") >"$log" 2>&1; then
    echo "images: docker build failed; last lines of $log:" >&2
    tail -n 25 "$log" >&2 || true
    if grep -q 'buildx component is missing' "$log"; then
      echo "images: this docker CLI needs buildx for BuildKit; use Debian's docker.io CLI: DOCKER=/usr/bin/docker" >&2
    fi
    exit 1
  fi
  say "built $tag ($(dk image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$tag"
}

cmd_prune() {
  need_engine
  local tag current
  read -r current _ < <(tag_and_hash)
  while read -r tag; do
    [ "$tag" = "$current" ] || [ "$tag" = "edgeops/tasks:<none>" ] && continue
    say "removing $tag"; dk image rm "$tag" >/dev/null
  done < <(dk image ls edgeops/tasks --format '{{.Repository}}:{{.Tag}}')
}

# --- compose stack (docker-compose.yml) -----------------------------------------------------------------

SERVICE_IMAGES=(postgres=edgeops/postgres:15 redis=edgeops/redis:7 device=edgeops/device:bookworm)
AIRFLOW_INPUTS=(dags plugins scripts tasks config pyproject.toml constraints.txt README.md docker/airflow.Dockerfile
  docker/airflow-constraints.txt)

minio_version() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["minio"]["module_version"])' "$repo/config/stack.json"; }
minio_image() { local v; v="$(minio_version)"; echo "edgeops/minio:${v##*-}"; }

# A content hash of everything the Airflow images carry (uncommitted edits included, caches excluded).
airflow_hash() {
  (cd "$repo" && find "${AIRFLOW_INPUTS[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

# Build one target of a Dockerfile from an assembled context directory; skipped when the tag exists.
build_target() {  # dockerfile context target tag [inputs-hash: rebuild when the image's label differs]
  local dockerfile="$1" ctx="$2" target="$3" tag="$4" inputs="${5:-}" log="$logs/images-$3.log"
  if image_exists "$tag" && [ "$(dk image inspect -f '{{index .Config.Labels "org.edgeops.inputs"}}' "$tag")" = "$inputs" ]; then
    say "$tag present; skipping"; return
  fi
  say "building $tag (target $target; log $log)"
  local start=$SECONDS
  if ! DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain dk build --network host -f "$dockerfile" --target "$target" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --secret "id=ca_bundle,src=$CA_BUNDLE" --label "org.edgeops.inputs=$inputs" \
      -t "$tag" "$ctx" >"$log" 2>&1; then
    echo "images: docker build of $tag failed; last lines of $log:" >&2; tail -n 25 "$log" >&2 || true; exit 1
  fi
  say "built $tag in $((SECONDS - start))s ($(dk image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# The hash-locked device runtime as build inputs: runtime-key (its directory name under the runtime root, from
# the lock's content) and runtime.lock (tasks/device/runtime.lock: what pip installs with --require-hashes, and
# the ready marker's content, as provision() writes it).
runtime_spec() {  # dir
  (cd "$repo" && "$PY" -c 'import sys
from pathlib import Path
from tasks.device.runtime import runtime_lock
out, lock = Path(sys.argv[1]), runtime_lock()
(out / "runtime-key").write_text(lock.key + "\n")
(out / "runtime.lock").write_text(lock.text)' "$1")
}

cmd_services() {
  need_engine
  image_exists "$BASE_IMAGE" || die "$BASE_IMAGE missing; run: scripts/images.sh base (or compose)"
  local bin ctx entry
  bin="${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/bin/minio-$(minio_version)"
  [ -x "$bin" ] || die "MinIO binary $bin missing; build it with: scripts/build_minio.sh"
  mkdir -p "$logs" "$cache"
  ctx="$(mktemp -d "$cache/ctx-services.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  cp -a "$repo/docker/services/." "$ctx/"
  cp "$bin" "$ctx/minio"
  runtime_spec "$ctx"  # the device image bakes the hash-locked device runtime in
  local inputs device_inputs  # the Dockerfile and its files (+ the runtime lock for the device): an edit rebuilds
  inputs="$(cd "$repo" && cat docker/services.Dockerfile docker/services/* | sha256sum | cut -c1-12)"
  device_inputs="$(cat "$ctx/runtime-key" "$ctx/runtime.lock" | sha256sum | cut -c1-6)"
  for entry in "${SERVICE_IMAGES[@]}"; do
    local target="${entry%%=*}" label="$inputs"
    [ "$target" = device ] && label="$inputs-runtime-$device_inputs"
    build_target "$repo/docker/services.Dockerfile" "$ctx" "$target" "${entry#*=}" "$label"
  done
  build_target "$repo/docker/services.Dockerfile" "$ctx" minio "$(minio_image)" "$inputs"
  dk tag "$(minio_image)" edgeops/minio:latest
}

cmd_airflow() {
  need_engine
  image_exists "$BASE_IMAGE" || die "$BASE_IMAGE missing; run: scripts/images.sh base (or compose)"
  local hash ctx target
  hash="$(airflow_hash)"
  mkdir -p "$logs" "$cache"
  ctx="$(mktemp -d "$cache/ctx-airflow.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  (cd "$repo" && tar --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' -cf - "${AIRFLOW_INPUTS[@]}") \
    | tar -C "$ctx" -xf -
  for target in airflow worker; do
    local name="edgeops/airflow"; [ "$target" = worker ] && name="edgeops/airflow-worker"
    build_target "$repo/docker/airflow.Dockerfile" "$ctx" "$target" "$name:$hash" "$hash"
    dk tag "$name:$hash" "$name:latest"
  done
}

cmd_prune_airflow() {  # untag edgeops/airflow{,-worker} images other than the current hash and :latest
  need_engine
  local hash tag
  hash="$(airflow_hash)"
  while read -r tag; do
    case "$tag" in *":$hash"|*":latest"|*"<none>"*) continue ;; esac
    if dk image rm "$tag" >/dev/null 2>&1; then say "removed $tag"; else say "kept $tag (a container uses it)"; fi
  done < <(dk image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^edgeops/airflow(-worker)?:' || true)
}

case "${1:-}" in
  services) cmd_services ;;
  airflow) cmd_airflow; cmd_prune_airflow ;;
  compose) cmd_base; cmd_services; cmd_airflow; cmd_prune_airflow ;;
  --print-airflow-tag) airflow_hash ;;
  base) cmd_base ;;
  tasks) cmd_tasks ;;
  all) cmd_base; cmd_tasks ;;
  prune) cmd_prune ;;
  --print-tag) read -r tag _ < <(tag_and_hash); echo "$tag" ;;
  *) echo "usage: scripts/images.sh base | tasks | all | prune | services | airflow | compose | --print-tag | --print-airflow-tag" >&2; exit 2 ;;
esac
