#!/bin/sh
# Minimal stand-in for the official postgres image's entrypoint: initdb on an empty $PGDATA with
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, password auth from the network, then exec postgres.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
[ -n "${POSTGRES_PASSWORD:-}" ] || { echo "postgres: set POSTGRES_PASSWORD" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown -R postgres:postgres "$PGDATA" /run/postgresql; chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw="$(mktemp)"; printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    postgres -D "$PGDATA" -c listen_addresses='' -c unix_socket_directories=/run/postgresql &
    pid=$!
    until pg_isready -q -h /run/postgresql; do sleep 0.2; done
    createdb -h /run/postgresql -U "$POSTGRES_USER" "$POSTGRES_DB"
    kill "$pid"; wait "$pid" || true
  fi
  echo "postgres: initialised $PGDATA (user $POSTGRES_USER, db $POSTGRES_DB)"
fi
[ "${1:-}" = postgres ] && shift
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
