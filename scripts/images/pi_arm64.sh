#!/usr/bin/env bash
# Build the emulated Raspberry Pi image edgeops/pi:bookworm-arm64 (Debian bookworm arm64, minbase + sshd +
# python3-venv) without any image registry: debootstrap from the Debian mirror the host's apt uses, then
# `docker load` of a one-layer arm64 image. Its binaries run under qemu-aarch64 through binfmt_misc (flag F),
# which scripts/engine.sh registers; that is also what lets debootstrap run the arm64 second stage in the
# chroot directly, so no --foreign / manual second stage is needed.
#
#   scripts/images/pi_arm64.sh [--rebuild] [--mirror URL]
#
# Skips everything when the image already exists. The root-fs tarball is cached in
# ${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/images/, so a machine with the tarball only re-imports it (seconds)
# instead of running debootstrap again (~5 minutes). --rebuild ignores both. Log: .devstack/logs/pi-image.log
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
image="${EDGEOPS_PI_IMAGE:-edgeops/pi:bookworm-arm64}"
suite=bookworm
arch=arm64
include=openssh-server,python3,python3-venv,ca-certificates,coreutils
cache="${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/images"
tarball="$cache/pi-$suite-$arch.tar.gz"
host_ca=/etc/ssl/certs/ca-certificates.crt
log="$repo/.devstack/logs/pi-image.log"
rebuild=0
mirror=""

while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) rebuild=1 ;;
    --mirror) mirror="${2:?--mirror needs a URL}"; shift ;;
    --mirror=*) mirror="${1#--mirror=}" ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pi_arm64: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$(dirname "$log")" "$cache"
say() { echo "pi-image: $*" | tee -a "$log"; }
die() { echo "pi-image: ERROR: $*" >&2; echo "pi-image: ERROR: $*" >>"$log"; exit 1; }
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) $0 $*" >>"$log"

# --- prerequisites ---------------------------------------------------------------------------------------
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 \
  || die "no container engine answers (docker info failed); start it with: scripts/engine.sh"
binfmt=/proc/sys/fs/binfmt_misc/qemu-aarch64
grep -qs '^enabled' "$binfmt" && grep -qs '^flags: .*F' "$binfmt" \
  || die "qemu-aarch64 is not registered in binfmt_misc with flag F; run: scripts/engine.sh"

exec 9>"$cache/pi-image.lock"
flock 9  # one build at a time per cache

# org.edgeops.root: images loaded before / was made 0755 lack it and are loaded again (seconds, from the tarball)
if [ "$rebuild" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "org.edgeops.root"}}' "$image" \
    2>/dev/null)" = "0755" ]; then
  platform=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
  say "$image already exists ($platform); nothing to do (--rebuild to redo)"
  exit 0
fi

# --- root fs tarball (cached) ----------------------------------------------------------------------------
mirror_from_apt() {
  # The first URI that serves "$suite" itself (not -security/-updates) in deb822 .sources or one-line lists.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; ok = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, " "); uri = a[2] }
          if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
          if ($i ~ /^Suites:/) { n = split($i, b, " "); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
        }
        if (ok && deb && uri != "") { print uri; exit } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
}

rootfs=""
cleanup() {
  [ -n "$rootfs" ] && [ -d "$rootfs" ] || return 0
  # debootstrap mounts proc/sys into the target; never rm -rf across a mount point
  awk -v r="$rootfs" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  if awk -v r="$rootfs" 'index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "pi-image: $rootfs still has mounts; not removing it" >&2
  else
    rm -rf "$rootfs"
  fi
}
trap cleanup EXIT

if [ "$rebuild" = 1 ] || [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing; run scripts/engine.sh (it installs it)"
  [ -s "$host_ca" ] || die "$host_ca missing: the image needs the host CA bundle for pip"
  mirror="${mirror:-$(mirror_from_apt | head -n 1)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d "$cache/pi-rootfs.XXXXXX")"
  say "debootstrap --arch=$arch --variant=minbase $suite from $mirror (5+ min under qemu; log $log)"
  t0=$SECONDS
  if ! debootstrap --arch="$arch" --variant=minbase --include="$include" \
      "$suite" "$rootfs" "$mirror" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    for f in "$rootfs/debootstrap/debootstrap.log"; do [ -e "$f" ] && tail -n 20 "$f" >&2; done
    die "debootstrap failed; see $log"
  fi
  t_debootstrap=$((SECONDS - t0))
  say "debootstrap done in ${t_debootstrap}s"

  # pip inside the device venv must trust what the host trusts (the registries are reached through it);
  # a separate file survives update-ca-certificates runs inside the image.
  install -m 0644 "$host_ca" "$rootfs/etc/ssl/certs/edgeops-host-ca-bundle.crt"
  install -m 0644 "$host_ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # SSH sessions start with a clean environment, so PIP_CERT/PIP_DEFAULT_TIMEOUT live in pip's global config
  cat >"$rootfs/etc/pip.conf" <<'CONF'
[global]
cert = /etc/ssl/certs/edgeops-host-ca-bundle.crt
timeout = 180
disable-pip-version-check = true
CONF
  # no baked-in host keys (devstack passes each container its own), no apt lists, sshd's privsep dir
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log "$rootfs"/debootstrap
  mkdir -p "$rootfs/var/lib/apt/lists/partial" "$rootfs/run/sshd"
  chmod 0755 "$rootfs/run/sshd"
  echo "edgeops-pi" >"$rootfs/etc/hostname"
  chroot "$rootfs" /usr/bin/python3 --version >>"$log" 2>&1 \
    || die "the arm64 python3 does not run in the chroot (qemu binfmt?); see $log"

  t0=$SECONDS
  chmod 0755 "$rootfs"  # mktemp -d made it 0700, and tar records it as the image's / (then only root gets in)
  tar --numeric-owner --xattrs -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -czf "$tarball.tmp" .
  mv -f "$tarball.tmp" "$tarball"
  say "cached $tarball ($(du -h "$tarball" | cut -f1)) in $((SECONDS - t0))s"
else
  say "using cached $tarball ($(du -h "$tarball" | cut -f1)); --rebuild to run debootstrap again"
fi

# --- import ---------------------------------------------------------------------------------------------
# `docker import --platform linux/arm64` is accepted by the 20.10 engine but the image is still recorded as
# linux/amd64 (platform needs an experimental daemon), so the image is assembled in `docker save` layout
# instead: one layer (the root fs), a config that says arm64, a manifest; then `docker load`.
t0=$SECONDS
work="$(mktemp -d "$cache/pi-load.XXXXXX")"
trap 'cleanup; rm -rf "$work"' EXIT
gzip -dc "$tarball" >"$work/layer.tar"
python3 - "$work" "$image" "$arch" "$suite" "$include" <<'PY'
import hashlib, json, sys, time
from pathlib import Path

work, image, arch, suite, include = Path(sys.argv[1]), *sys.argv[2:]
# The image's / is the tarball's first member, "./". Tarballs cached before the chmod above recorded it 0700, so
# a non-root login (the compose devices' `pi`) could not reach /etc or its home: set its mode to 0755 in place.
with open(work / "layer.tar", "r+b") as fh:
    offset, head = 0, bytearray(fh.read(512))
    while head[156:157] in (b"x", b"g"):  # pax extended headers (--xattrs) come before the member they describe
        offset += 512 + -(-int(head[124:136].strip(b"\0 ") or b"0", 8) // 512) * 512
        fh.seek(offset)
        head = bytearray(fh.read(512))
    if head[:100].rstrip(b"\0") in (b"./", b".") and head[156:157] == b"5":
        head[100:108] = b"0000755\0"
        head[148:156] = b" " * 8
        head[148:156] = b"%06o\0 " % sum(head)
        fh.seek(offset)
        fh.write(head)
digest = hashlib.sha256()
with open(work / "layer.tar", "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
config = {
    "architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {}), "created": created,
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PIP_CERT=/etc/ssl/certs/edgeops-host-ca-bundle.crt", "PIP_DEFAULT_TIMEOUT=180"],
        "Cmd": ["/usr/sbin/sshd", "-D", "-e"],
        "Labels": {"org.edgeops.image": "pi", "org.edgeops.root": "0755", "org.edgeops.debootstrap": f"{suite} {arch} minbase +{include}"},
    },
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
    "history": [{"created": created, "created_by": f"scripts/images/pi_arm64.sh: debootstrap {suite} {arch}"}],
}
blob = json.dumps(config, sort_keys=True).encode()
name = hashlib.sha256(blob).hexdigest() + ".json"
(work / name).write_bytes(blob)
(work / "manifest.json").write_text(json.dumps([{"Config": name, "RepoTags": [image], "Layers": ["layer.tar"]}]))
PY
tar -C "$work" -cf - . | docker load >>"$log" 2>&1 || die "docker load failed; see $log"
size=$(docker image inspect -f '{{.Size}}' "$image")
platform=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
say "loaded $image ($platform, $((size / 1024 / 1024)) MiB) in $((SECONDS - t0))s"
docker run --rm --network host --tmpfs /sys/devices/system/cpu "$image" /usr/bin/python3 -c \
  'import platform; print("pi-image: smoke test:", platform.machine(), "python", platform.python_version())' \
  2> >(grep -v "does not match the detected host platform" >&2) | tee -a "$log"
