# Sourced by scripts/images.sh and scripts/compose/up.sh: room on the container engine's disk.
# vfs (this engine's storage driver) keeps a full copy of the filesystem per image layer and per container, and
# BuildKit's cache is full copies too, so the containers tier needs tens of GB. When the disk runs out mid-build,
# BuildKit says only "no space left on device" from a snapshot: check first, prune the build cache when short,
# and name the fix when that is not enough.
#   ensure_engine_space <GB> <for what>     (EDGEOPS_ENGINE_MIN_FREE_GB overrides the GB)

engine_free_gb() {
  local root
  root="$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)"
  df -P --block-size=1G "$root" | awk 'NR==2 {print $4}'
}

ensure_engine_space() {
  local need="${EDGEOPS_ENGINE_MIN_FREE_GB:-$1}" what="$2"
  if [ "$(engine_free_gb)" -lt "$need" ]; then
    echo "engine space: $(engine_free_gb) GB free, $what needs ~${need} GB: pruning the build cache (docker builder prune -af)" >&2
    docker builder prune -af >/dev/null 2>&1 || true
  fi
  if [ "$(engine_free_gb)" -lt "$need" ]; then
    echo "engine space: only $(engine_free_gb) GB free for the engine; $what needs ~${need} GB on vfs. Free space:" \
         "docker image prune -a (stale edgeops images), make compose-down, or set EDGEOPS_ENGINE_MIN_FREE_GB" >&2
    return 1
  fi
}
