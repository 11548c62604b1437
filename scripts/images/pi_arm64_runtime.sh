#!/usr/bin/env bash
# The emulated arm64 Pi of the compose stack: edgeops/pi:bookworm-arm64 (scripts/images/pi_arm64.sh) plus the
# hash-locked device runtime (tasks/device/runtime.lock) baked in, tagged edgeops/pi:bookworm-arm64-runtime.
#
# Compose networks have no route to PyPI on this engine (--iptables=false, no NAT), so the runtime the deploy
# provisions must already be there: /opt/edgeops/runtimes/<runtime_key>/ (a venv of the lock) and its ready
# marker written last, exactly what DeviceRuntime.provision() leaves behind. The compose connections point
# extra.runtime_root at /opt/edgeops/runtimes (outside the /root volume, which would shadow it), so provisioning
# finds the runtime ready and never runs pip. The process-based tier (devstack --with-containers) is unchanged:
# its pi_arm64 container uses --network host and provisions from PyPI into its bind-mounted deploy root.
#
# How: `docker run` of the pi image under qemu with --network host (this build reaches PyPI) and
# --tmpfs /sys/devices/system/cpu (LiteRT under qemu in docker segfaults when it can read the host CPU
# topology), pip install --require-hashes of the lock (fed on stdin), an import check, the marker, then
# `docker commit` (keeps linux/arm64).
# Skipped when the tag exists with the same runtime key and base image id (label org.edgeops.runtime).
#
#   scripts/images/pi_arm64_runtime.sh [--rebuild]        Log: .devstack/logs/pi-image-runtime.log
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base="${EDGEOPS_PI_IMAGE:-edgeops/pi:bookworm-arm64}"
image="${EDGEOPS_PI_ARM64_IMAGE:-edgeops/pi:bookworm-arm64-runtime}"
runtime_root=/opt/edgeops/runtimes
log="$repo/.devstack/logs/pi-image-runtime.log"
PY="$repo/.venv/bin/python"
[ -x "$PY" ] || PY=python3
rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1

mkdir -p "$(dirname "$log")"
say() { echo "pi-runtime: $*" | tee -a "$log" >&2; }
die() { echo "pi-runtime: ERROR: $*" | tee -a "$log" >&2; exit 1; }
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) $0 $*" >>"$log"

docker image inspect "$base" >/dev/null 2>&1 || die "$base missing; build it with scripts/images/pi_arm64.sh"
lock="$repo/tasks/device/runtime.lock"
key="$(cd "$repo" && "$PY" -c 'from tasks.device.runtime import runtime_key; print(runtime_key())')" || key=
[ -n "$key" ] || die "could not compute the runtime key (tasks/device/runtime.lock; re-lock: .venv/bin/python -m scripts.lock_device_runtime)"
want="$key $(docker image inspect -f '{{.Id}}' "$base" | cut -c8-19)"
have="$(docker image inspect -f '{{index .Config.Labels "org.edgeops.runtime"}}' "$image" 2>/dev/null || true)"
if [ "$rebuild" = 0 ] && [ "$have" = "$want" ]; then
  say "$image present (runtime $key); skipping"
  exit 0
fi

name="edgeops-pi-runtime-build-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
say "installing runtime $key ($lock) into $base under qemu; a few minutes"
t0=$SECONDS
# The marker is the lock's text (what provision() writes), moved into place last.
script='set -eu
rt="$1/$2"
mkdir -p "$(dirname "$rt")"; rm -rf "$rt"
/usr/bin/python3 -m venv "$rt"
cat > "$rt/runtime.lock"
"$rt/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off --require-hashes \
  --no-deps --only-binary=:all: --no-cache-dir -r "$rt/runtime.lock"
"$rt/bin/python" -c "import ai_edge_litert.interpreter, numpy, platform; print(\"pi-runtime: imports ok on\", platform.machine())"
cp "$rt/runtime.lock" "$rt/.edgeops-ready.tmp"; sync; mv "$rt/.edgeops-ready.tmp" "$rt/.edgeops-ready"'
if ! docker run -i --name "$name" --network host --tmpfs /sys/devices/system/cpu "$base" \
    /bin/sh -c "$script" sh "$runtime_root" "$key" <"$lock" >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "installing the runtime failed; see $log"
fi
docker commit --change "LABEL org.edgeops.runtime=\"$want\"" --change 'CMD ["/usr/sbin/sshd", "-D", "-e"]' \
  "$name" "$image" >>"$log" || die "docker commit failed"
platform=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
[ "$platform" = linux/arm64 ] || die "$image is recorded as $platform, not linux/arm64"
say "built $image ($platform, runtime $runtime_root/$key) in $((SECONDS - t0))s"
