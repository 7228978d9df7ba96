#!/usr/bin/env bash
# Measures what DOCKER_ML_CLEANUP_IMPLEMENTATION.md reports: image size and bytes above the base,
# cold build, code-only rebuild, container start -> healthy (first start and restart, with and
# without the ML mounts), ML env and model cache sizes. Needs a bootstrapped ML env:
#   ML_ENV_DIR=... MODELS_DIR=... tests/e2e/measure_docker.sh [--cold]
# --cold first empties the BuildKit cache (every image layer is rebuilt; the base image stays).
# Uses host networking (docker-sandbox) and its own project/port, like the e2e tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
: "${ML_ENV_DIR:?set ML_ENV_DIR to a bootstrapped ML env}" "${MODELS_DIR:?set MODELS_DIR}"
export RAGSERVER_IMAGE=ragserver:measure RAGSERVER_CONTAINER=rsmeasure-server PORT=${PORT:-18281}
export RAGSERVER_ENV_FILE=/dev/null
COMPOSE=(docker compose -p rsmeasure -f docker-compose.yml -f tests/e2e/compose.hostnet.yml)
now() { date +%s.%N; }
since() { printf '%.1f' "$(echo "$(now) - $1" | bc)"; }

until_healthy() {  # seconds to /health 200 and to docker healthy, since the command ($1) and since the
    # container process started (State.StartedAt: without docker's own stop/create/mount time)
    local start=$1 container=$2 http="" http_at="" started
    while :; do
        if [ -z "$http" ] && python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null; then
            http=$(since "$start") http_at=$(now)
        fi
        if [ "$(docker inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; then
            started=$(date -d "$(docker inspect -f '{{.State.StartedAt}}' "$container")" +%s.%N)
            printf '/health 200 after %s s (%.1f s after the container started), docker healthy after %s s\n' \
                "${http:-?}" "$(echo "${http_at:-$started} - $started" | bc)" "$(since "$start")"
            return
        fi
        sleep 0.1
    done
}

"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
if [ "${1:-}" = --cold ]; then
    docker builder prune -af >/dev/null
    docker rmi "$RAGSERVER_IMAGE" >/dev/null 2>&1 || true
fi
t=$(now); "${COMPOSE[@]}" build -q server; echo "build (${1:-warm cache}): $(since "$t") s"

# Rebuilds from a copy of the context with one file changed: a source file (the code layer only), then
# the lock (the dependency layer and everything after it).
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
cp -r python/pyproject.toml python/requirements python/src python/docker python/.dockerignore python/extract-ml-env.sh "$ctx"/
cp python/Dockerfile.server "$ctx"/
rebuild() {  # $1: what changed, $2: the file to touch
    echo "# $1 rebuild $(date +%s%N)" >>"$ctx/$2"
    local t; t=$(now)
    docker compose -p rsmeasure --project-directory "$ctx" -f /dev/stdin build -q <<EOF
services:
  server: {image: ragserver:measure-rebuild, build: {context: $ctx, dockerfile: Dockerfile.server, network: host}}
EOF
    echo "$1 rebuild: $(since "$t") s"
}
rebuild code-only src/ragserver/cli.py
rebuild lock-change requirements/server.lock
docker rmi ragserver:measure-rebuild >/dev/null

base=$(docker image inspect -f '{{.Size}}' python:3.11-slim)
size=$(docker image inspect -f '{{.Size}}' "$RAGSERVER_IMAGE")
echo "image: $((size / 1000000)) MB total, $(((size - base) / 1000000)) MB above the base ($((base / 1000000)) MB)"
echo "ML env: $(du -sh "$ML_ENV_DIR" | cut -f1)   model cache: $(du -shL "$MODELS_DIR" | cut -f1)"

t=$(now); "${COMPOSE[@]}" up -d --no-build server >/dev/null 2>&1
echo "first start (new data volume) -> $(until_healthy "$t" "$RAGSERVER_CONTAINER")"
t=$(now); docker restart "$RAGSERVER_CONTAINER" >/dev/null
echo "restart (existing data) -> $(until_healthy "$t" "$RAGSERVER_CONTAINER")"
"${COMPOSE[@]}" down -v >/dev/null 2>&1

name=rsmeasure-noml
t=$(now); docker run -d --name "$name" --network host -e PORT="$PORT" --health-interval 1s "$RAGSERVER_IMAGE" >/dev/null
echo "no ML mounts, first start -> $(until_healthy "$t" "$name")"
t=$(now); docker restart "$name" >/dev/null
echo "no ML mounts, restart -> $(until_healthy "$t" "$name")"
docker rm -fv "$name" >/dev/null
docker rmi "$RAGSERVER_IMAGE" >/dev/null
