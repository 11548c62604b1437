#!/usr/bin/env bash
# Docker Compose v2 without a registry or a release download: build the pinned version from its Go module,
# cache the binary, install it as a Docker CLI plugin so that `docker compose` works.
#
#   scripts/build_compose.sh            build (once) + install; prints the plugin path (last line)
#   scripts/build_compose.sh --check    exit 0 if `docker compose version` reports the pinned version
#
# Debian bookworm ships only Compose v1 (1.29). `go install github.com/docker/compose/v2/cmd@...` refuses the
# module (its go.mod has exclude directives), so: `go mod download` the module, then `go build ./cmd` inside
# its source directory in the module cache. ~5 min cold on 2 cores, 64 MB binary; cached afterwards as
#   ${EDGEOPS_CACHE:-$HOME/.cache/edgeops}/bin/docker-compose-<version>
# and installed (copied) to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose.
# Environment: EDGEOPS_COMPOSE_VERSION (default: the pin below), EDGEOPS_CACHE.
set -euo pipefail

version="${EDGEOPS_COMPOSE_VERSION:-v2.40.3}"
module="github.com/docker/compose/v2"
cache="${EDGEOPS_CACHE:-$HOME/.cache/edgeops}"
dest="$cache/bin/docker-compose-$version"
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
plugin="$plugin_dir/docker-compose"
log="$cache/compose-build.log"

say() { echo "build_compose: $*" >&2; }
die() { echo "build_compose: $*" >&2; exit 1; }
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad version '$version' (want vX.Y.Z)"

installed_version() { "$1" version --short 2>/dev/null | sed 's/^v//'; }

if [[ "${1:-}" == "--check" ]]; then
  [[ "$(docker compose version --short 2>/dev/null | sed 's/^v//')" == "${version#v}" ]]
  exit
fi

mkdir -p "$cache/bin" "$plugin_dir"
exec 9>"$cache/compose-build.lock"
flock 9  # one builder at a time

if [[ ! -x "$dest" ]]; then
  command -v go >/dev/null || die "'go' not found on PATH (need Go >= 1.24 to build $module@$version)"
  say "building $module@$version (~5 min cold; log $log)"
  start=$SECONDS
  {
    echo "# $(date -u +%FT%TZ) go mod download $module@$version && go build ./cmd"
    set +e
    dir="$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    set -e
  } >"$log" 2>&1
  [[ -n "${dir:-}" && -d "$dir" ]] || die "go mod download $module@$version failed; see $log"
  out="$dest.tmp.$$"
  # The module cache is read-only; build from inside it with the version stamped like the release builds.
  if ! (cd "$dir" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" \
        -o "$out" ./cmd) >>"$log" 2>&1; then
    rm -f "$out"; tail -n 25 "$log" >&2; die "go build failed; see $log"
  fi
  [[ "$(installed_version "$out")" == "${version#v}" ]] || { rm -f "$out"; die "built binary does not report $version"; }
  mv -f "$out" "$dest"
  say "built $dest in $((SECONDS - start))s ($(du -h "$dest" | cut -f1))"
else
  say "cached $dest"
fi

if ! cmp -s "$dest" "$plugin"; then
  install -m 0755 "$dest" "$plugin.tmp.$$" && mv -f "$plugin.tmp.$$" "$plugin"
  say "installed CLI plugin $plugin"
fi
docker compose version >/dev/null 2>&1 \
  || die "\`docker compose version\` fails although $plugin is installed (is the docker CLI on PATH?)"
echo "$plugin"
