#!/usr/bin/env bash
# Make a container engine reachable and arm64 binaries runnable, on a fresh Debian machine:
#   * install Debian's docker.io, qemu-user-static and debootstrap when missing (apt-get);
#   * start dockerd when no engine answers (vfs storage, no iptables, no bridge: containers use --network host);
#   * register qemu-aarch64 with binfmt_misc using the F (fix-binary) flag, so it works inside containers.
# Idempotent; exits non-zero with the reason (and the log path) when the engine cannot start.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$repo/.devstack"
log="$state/logs/dockerd.log"
mkdir -p "$state/logs" "$state/run"

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /usr/bin/qemu-aarch64-static ] || need_pkgs+=(qemu-user-static)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "engine: installing ${need_pkgs[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_pkgs[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
fi

if ! docker info >/dev/null 2>&1; then
  echo "engine: starting dockerd (vfs, --iptables=false, --bridge=none); log $log"
  nohup dockerd --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
    --pidfile "$state/run/dockerd.pid" >>"$log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "engine: dockerd did not become reachable in 60 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
  fi
fi
echo "engine: docker $(docker version --format '{{.Server.Version}}') reachable"

binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  # magic/mask of an aarch64 ELF executable, as in Debian's qemu-user-static binfmt file; F = open the
  # interpreter now, so containers that do not contain qemu can still run arm64 binaries.
  printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' >"$binfmt/register"
fi
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" || { echo "engine: qemu-aarch64 registered without the F flag; run: echo -1 > $binfmt/qemu-aarch64 and retry" >&2; exit 1; }
echo "engine: binfmt qemu-aarch64 registered (flags: $(sed -n 's/^flags: //p' "$binfmt/qemu-aarch64"))"
