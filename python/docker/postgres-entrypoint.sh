#!/bin/sh
# Entry point of Dockerfile.postgres: on a new data volume, initdb with POSTGRES_PASSWORD for the
# superuser POSTGRES_USER (password auth over TCP, trust only on the container's own unix socket),
# create POSTGRES_DB with the vector extension; then run Postgres in the foreground on PGPORT.
set -eu

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres: POSTGRES_PASSWORD is empty; set it (in .env for docker compose) before the first start" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    # initdb allows TCP from localhost only; the replicas connect from other containers
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "CREATE EXTENSION IF NOT EXISTS vector" | postgres --single -D "$PGDATA" "$POSTGRES_DB" >/dev/null
fi

exec postgres -D "$PGDATA" -p "$PGPORT" -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
