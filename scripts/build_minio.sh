#!/usr/bin/env bash
# Build the MinIO server pinned in config/stack.json (minio.module_version) and cache the binary at
#   ${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/bin/minio-<version>
# Prints the binary path on stdout (last line). Skips everything when the cached binary already exists.
#
# If a build of the same version is already running in the background (GOBIN=$CACHE/minio-build,
# log $CACHE/minio-build.log, last line "rc=N" when done), this waits for it and adopts its binary
# instead of starting a second concurrent build. Builds started here use the same layout and log.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stack_json="$repo_root/config/stack.json"
cache="${EDGEOPS_CACHE:-$HOME/.cache/edgeops}"
module="github.com/minio/minio"

py="$(command -v python3 || true)"
[[ -n "$py" ]] || py="$repo_root/.venv/bin/python"
version="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["minio"]["module_version"])' "$stack_json")"
[[ "$version" =~ ^v[0-9A-Za-z.+-]+$ ]] || { echo "build_minio: bad minio.module_version '$version' in $stack_json" >&2; exit 2; }

dest="$cache/bin/minio-$version"
build_dir="$cache/minio-build"
log="$cache/minio-build.log"
mkdir -p "$cache/bin"

if [[ -x "$dest" ]]; then
  echo "build_minio: cached $dest" >&2
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "build_minio: 'go' not found on PATH (need Go >= 1.24 to build $module@$version)" >&2; exit 127; }

# One builder at a time (this script); the lock is released when the script exits.
exec 9>"$cache/minio-build.lock"
flock 9

build_running() {  # a go install of exactly this module@version, started by anyone
  pgrep -f "go install $module@$version" >/dev/null 2>&1
}

last_rc() {  # the N of a final "rc=N" line of the log, or empty while the build is still running
  [[ -f "$log" ]] || return 0
  tail -n 1 "$log" | sed -n 's/^rc=\([0-9][0-9]*\)$/\1/p'
}

adopt() {  # copy the built binary into the cache atomically, check it runs
  local built="$build_dir/minio"
  [[ -x "$built" ]] || { echo "build_minio: build reported rc=0 but $built is missing" >&2; exit 1; }
  cp "$built" "$dest.tmp.$$"
  chmod 0755 "$dest.tmp.$$"
  "$dest.tmp.$$" --version >&2 || { echo "build_minio: $built does not run" >&2; rm -f "$dest.tmp.$$"; exit 1; }
  mv -f "$dest.tmp.$$" "$dest"
  echo "build_minio: cached $dest" >&2
  echo "$dest"
  exit 0
}

fail() {
  echo "build_minio: building $module@$version failed (rc=$1); last lines of $log:" >&2
  grep -v '^go: downloading' "$log" | tail -n 25 >&2 || true
  exit "$1"
}

if build_running; then
  echo "build_minio: a build of $module@$version is already running (log $log); waiting for it..." >&2
  start=$SECONDS
  while build_running && [[ -z "$(last_rc)" ]]; do sleep 5; done
  # the background wrapper writes rc=N right after go exits
  for _ in 1 2 3 4 5 6; do [[ -n "$(last_rc)" ]] && break; sleep 1; done
  echo "build_minio: background build finished after $((SECONDS - start))s of waiting" >&2
fi

rc="$(last_rc)"
built_version() {  # the main module version recorded in a Go binary's build info
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

if [[ "$rc" == "0" && -x "$build_dir/minio" ]]; then
  if [[ "$(built_version "$build_dir/minio")" == "$version" ]]; then
    adopt
  fi
  echo "build_minio: $build_dir/minio is $(built_version "$build_dir/minio"), not $version; rebuilding" >&2
elif [[ -n "$rc" && "$rc" != "0" ]]; then
  echo "build_minio: the previous build failed (rc=$rc); retrying. Its error:" >&2
  grep -v '^go: downloading' "$log" | tail -n 15 >&2 || true
fi

# Nothing usable: build it here (same GOBIN and log layout as the background build).
echo "build_minio: building $module@$version (CGO_ENABLED=0), log $log" >&2
mkdir -p "$build_dir"
rm -f "$build_dir/minio"
start=$SECONDS
{
  echo "# $(date -u +%FT%TZ) CGO_ENABLED=0 GOBIN=$build_dir go install $module@$version"
} >"$log"
set +e
CGO_ENABLED=0 GOBIN="$build_dir" go install "$module@$version" >>"$log" 2>&1
rc=$?
set -e
echo "rc=$rc" >>"$log"
echo "build_minio: go install finished in $((SECONDS - start))s with rc=$rc" >&2
[[ "$rc" == "0" ]] || fail "$rc"
adopt
