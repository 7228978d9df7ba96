#!/usr/bin/env bash
# Once per host: put the ML stack (torch, sentence-transformers, transformers) and the models into
# the two host folders that docker-compose.yml mounts into the slim server image:
#
#   ML_ENV_DIR (default ./ml-env)  -> /root/.local               pip --user site + ml-env.json
#   MODELS_DIR (default ./models)  -> /root/.cache/huggingface   HF cache (reranker + embedding model)
#
# Sequence: check docker and disk -> build the bootstrap image -> install into STAGING folders ->
# verify them offline in a throwaway container (`ragserver check-ml`: imports, models, one score)
# -> swap them in. A failure at any step exits non-zero and leaves the previous ML env as it was.
# A second run with the same inputs is a no-op (a stamp of the inputs is kept in each folder).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=$(basename "$0")
BOOTSTRAP_IMAGE=${BOOTSTRAP_IMAGE:-ragserver-bootstrap:latest}
STAMP_FORMAT=1
STEPS=6

usage() {
    cat <<EOF
Usage: ./$PROG [options]

Install the ML environment and models the ragserver container mounts (see DOCKER_ML_CLEANUP_IMPLEMENTATION.md).

Options:
  --gpu              CUDA build of torch (index TORCH_CUDA_INDEX_URL); use with: docker compose --profile gpu up -d server-gpu
  --force            rebuild everything even if nothing changed
  --model-dir DIR    take the models from DIR instead of downloading them (air-gapped hosts):
                     an HF cache (DIR/hub/models--Org--Name) or plain folders (DIR/Org/Name/config.json)
  --find-links DIR   install torch from this wheelhouse instead of the PyTorch index (e.g. /opt/wheels)
  --network MODE     docker network for the build and the install (e.g. host); default: docker's default
  -h, --help         show this help

Settings (environment, else .env in $ROOT, else the default):
  ML_ENV_DIR=./ml-env  MODELS_DIR=./models
  RERANKER_MODEL=Qwen/Qwen3-Reranker-0.6B  EMBEDDING_MODEL=sentence-transformers/all-MiniLM-L6-v2
  TORCH_VERSION=2.13.0  TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
  TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu128
  ML_PACKAGES (default: the ml extra of python/pyproject.toml)  BOOTSTRAP_MIN_FREE_GB=6 (16 with --gpu)
EOF
}

log() { printf '==> %s\n' "$*"; }
step() { printf '\n[%s/%s] %s\n' "$1" "$STEPS" "$2"; }
die() {
    printf '\nERROR: %s\n' "$1" >&2
    [ -n "${2:-}" ] && printf 'What to do: %s\n' "$2" >&2
    exit 1
}

# --- options -------------------------------------------------------------------------------
GPU=0 FORCE=0 MODEL_DIR="" FIND_LINKS="" NETWORK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) GPU=1 ;;
        --force) FORCE=1 ;;
        --model-dir) MODEL_DIR=${2:?--model-dir needs a folder}; shift ;;
        --model-dir=*) MODEL_DIR=${1#*=} ;;
        --find-links) FIND_LINKS=${2:?--find-links needs a folder}; shift ;;
        --find-links=*) FIND_LINKS=${1#*=} ;;
        --network) NETWORK=${2:?--network needs a mode}; shift ;;
        --network=*) NETWORK=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" "see ./$PROG --help" ;;
    esac
    shift
done

# --- settings: environment first, then .env (the same precedence as docker compose) ---------
read_env_file() {
    local file=$1 line key value
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
        case "$key" in
            ML_ENV_DIR | MODELS_DIR | RERANKER_MODEL | EMBEDDING_MODEL | TORCH_VERSION | TORCH_INDEX_URL | \
                TORCH_CUDA_INDEX_URL | ML_PACKAGES | BOOTSTRAP_MIN_FREE_GB) ;;
            *) continue ;;
        esac
        if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
            value=${BASH_REMATCH[1]}
        else
            value=${value%%[[:space:]]#*}
            value=${value%"${value##*[![:space:]]}"}
        fi
        [ -n "${!key+x}" ] || export "$key=$value"
    done <"$file"
}
read_env_file "$ROOT/.env"

abs_path() {  # relative paths are relative to the project folder, as in docker-compose.yml
    case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$ROOT" "${1#./}" ;; esac
}
ML_ENV_DIR=$(abs_path "${ML_ENV_DIR:-./ml-env}")
MODELS_DIR=$(abs_path "${MODELS_DIR:-./models}")
RERANKER_MODEL=${RERANKER_MODEL:-Qwen/Qwen3-Reranker-0.6B}
EMBEDDING_MODEL=${EMBEDDING_MODEL:-sentence-transformers/all-MiniLM-L6-v2}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
ML_PACKAGES=${ML_PACKAGES:-}  # empty: the `ml` extra of python/pyproject.toml (minus torch)
if [ "$GPU" = 1 ]; then
    TORCH_VARIANT=cuda
    TORCH_INDEX_URL=${TORCH_CUDA_INDEX_URL:-https://download.pytorch.org/whl/cu128}
    MIN_FREE_GB=${BOOTSTRAP_MIN_FREE_GB:-16}
else
    TORCH_VARIANT=cpu
    TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
    MIN_FREE_GB=${BOOTSTRAP_MIN_FREE_GB:-6}
fi
[ -z "$MODEL_DIR" ] || { MODEL_DIR=$(abs_path "$MODEL_DIR"); [ -d "$MODEL_DIR" ] || die "--model-dir $MODEL_DIR is not a folder"; }
[ -z "$FIND_LINKS" ] || { FIND_LINKS=$(abs_path "$FIND_LINKS"); [ -d "$FIND_LINKS" ] || die "--find-links $FIND_LINKS is not a folder"; }

# Models given as local folders are mounted by the user, not bootstrapped.
MODELS=""
for id in "$RERANKER_MODEL" "$EMBEDDING_MODEL"; do
    case "$id" in /* | ./* | ../*) log "model $id is a local folder: not bootstrapped" ;; *) MODELS="$MODELS $id" ;; esac
done
MODELS=${MODELS# }

# Always one element, so "${NET_ARGS[@]}" is safe under `set -u` in bash 3.2 (macOS) too.
NET_ARGS=(--network "${NETWORK:-default}")

# --- 1. docker -----------------------------------------------------------------------------
step 1 "checking docker"
command -v docker >/dev/null || die "docker is not installed" "install Docker Engine: https://docs.docker.com/engine/install/"
docker info >/dev/null 2>&1 || die "docker does not answer (engine stopped, or no permission on its socket)" \
    "start the engine (sudo systemctl start docker) or add yourself to the docker group, then retry"
log "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null) is running"

# --- 2. disk space and what changed ---------------------------------------------------------
step 2 "checking disk space and what changed"
PARENT=$(dirname "$ML_ENV_DIR")
mkdir -p "$PARENT" "$(dirname "$MODELS_DIR")" || die "cannot create $PARENT" "check ML_ENV_DIR and MODELS_DIR in .env"
free_kb=$(df -Pk "$PARENT" | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt $((MIN_FREE_GB * 1024 * 1024)) ]; then
    die "only $((free_kb / 1024 / 1024)) GB free under $PARENT; the ML env needs about $MIN_FREE_GB GB" \
        "free some space, or point ML_ENV_DIR/MODELS_DIR at a bigger disk (BOOTSTRAP_MIN_FREE_GB lowers the check)"
fi
log "$((free_kb / 1024 / 1024)) GB free under $PARENT"

sha() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -c1-16; }
# name, size and time of every file under $1 (portable: no GNU find -printf, no GNU stat)
listing() { [ -z "$1" ] || (cd "$1" && find -L . -type f -exec ls -lnL {} + | awk '{$1=$2=$3=$4=""; print}' | LC_ALL=C sort); }
ENV_STAMP=$({
    echo "format=$STAMP_FORMAT torch=$TORCH_VERSION variant=$TORCH_VARIANT index=$TORCH_INDEX_URL"
    echo "packages=$ML_PACKAGES base=${BASE_IMAGE:-python:3.11-slim}"
    cat "$ROOT/python/Dockerfile.server.bootstrap" "$ROOT/python/extract-ml-env.sh"
    sed -n '/^ml = \[/,/^\]/p' "$ROOT/python/pyproject.toml"
    listing "$FIND_LINKS"
} | sha)
MODELS_STEP=fetch
[ -z "$MODEL_DIR" ] || MODELS_STEP=import
MODELS_STAMP=$({
    echo "format=$STAMP_FORMAT models=$MODELS step=$MODELS_STEP"
    listing "$MODEL_DIR"
} | sha)
current_stamp() { cat "$1/.bootstrap-stamp" 2>/dev/null || true; }

need_env=0 need_models=0
if [ "$FORCE" = 1 ] || [ ! -f "$ML_ENV_DIR/ml-env.json" ] || [ "$(current_stamp "$ML_ENV_DIR")" != "$ENV_STAMP" ]; then
    need_env=1
fi
if [ "$FORCE" = 1 ] || [ ! -d "$MODELS_DIR/hub" ] || [ "$(current_stamp "$MODELS_DIR")" != "$MODELS_STAMP" ]; then
    need_models=1
fi
if [ "$need_env" = 0 ] && [ "$need_models" = 0 ]; then
    log "the ML env in $ML_ENV_DIR and the models in $MODELS_DIR are up to date: nothing to do"
    log "(./$PROG --force rebuilds them)"
    exit 0
fi
ENV_STEP=install
[ "$need_env" = 1 ] || ENV_STEP=copy
[ "$need_models" = 1 ] || MODELS_STEP=keep
log "ML env: $ENV_STEP ($TORCH_VARIANT torch $TORCH_VERSION)   models: $MODELS_STEP ($MODELS)"

# --- 3. bootstrap image --------------------------------------------------------------------
step 3 "building the bootstrap image $BOOTSTRAP_IMAGE"
BUILD_LOG=$(mktemp)
trap 'rm -f "$BUILD_LOG"' EXIT
if ! docker build "${NET_ARGS[@]}" ${BASE_IMAGE:+--build-arg BASE_IMAGE="$BASE_IMAGE"} \
    -f "$ROOT/python/Dockerfile.server.bootstrap" -t "$BOOTSTRAP_IMAGE" "$ROOT/python" >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "the bootstrap image did not build" "read the build output above; behind a proxy or without a bridge try --network host"
fi
log "built $BOOTSTRAP_IMAGE"

# Folders written by the container belong to root: remove them with a container when we cannot.
remove_tree() {
    [ -e "$1" ] || return 0
    rm -rf "$1" 2>/dev/null && return 0
    docker run --rm --network none --entrypoint rm -v "$(dirname "$1")":/parent "$BOOTSTRAP_IMAGE" \
        -rf "/parent/$(basename "$1")"
}

ENV_STAGE="$ML_ENV_DIR.staging"
MODELS_STAGE="$MODELS_DIR.staging"
MODELS_MOUNT="$MODELS_DIR"
[ "$MODELS_STEP" = keep ] || MODELS_MOUNT="$MODELS_STAGE"
cleanup_staging() {
    remove_tree "$ENV_STAGE" || true
    [ "$MODELS_STEP" = keep ] || remove_tree "$MODELS_STAGE" || true
}
fail() {
    cleanup_staging
    die "$1" "$2 (the previous ML env in $ML_ENV_DIR and models in $MODELS_DIR are unchanged)"
}

# --- 4. install into staging ---------------------------------------------------------------
step 4 "installing into staging folders (this takes a few minutes the first time)"
cleanup_staging
mkdir -p "$ENV_STAGE" "$MODELS_MOUNT"
RUN_ARGS=(
    -v "$ENV_STAGE:/root/.local"
    -e ENV_STEP="$ENV_STEP" -e MODELS_STEP="$MODELS_STEP" -e MODELS="$MODELS"
    -e TORCH_VERSION="$TORCH_VERSION" -e TORCH_VARIANT="$TORCH_VARIANT" -e TORCH_INDEX_URL="$TORCH_INDEX_URL"
    -e ML_PACKAGES="$ML_PACKAGES" -e ENV_STAMP="$ENV_STAMP" -e MODELS_STAMP="$MODELS_STAMP"
)
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST HF_TOKEN HF_ENDPOINT HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -z "${!var:-}" ] || RUN_ARGS+=(-e "$var")
done
if [ "$MODELS_STEP" = keep ]; then
    RUN_ARGS+=(-v "$MODELS_DIR:/root/.cache/huggingface:ro")
else
    RUN_ARGS+=(-v "$MODELS_STAGE:/root/.cache/huggingface")
fi
[ "$ENV_STEP" = install ] || RUN_ARGS+=(-v "$ML_ENV_DIR:/current/env:ro")
[ -z "$FIND_LINKS" ] || RUN_ARGS+=(-v "$FIND_LINKS:/wheels:ro")
[ -z "$MODEL_DIR" ] || RUN_ARGS+=(-v "$MODEL_DIR:/import:ro")
docker run --rm "${NET_ARGS[@]}" "${RUN_ARGS[@]}" "$BOOTSTRAP_IMAGE" install ||
    fail "installing the ML env failed (see the messages above)" \
        "fix the cause (network, TORCH_VERSION, --find-links, --model-dir) and rerun ./$PROG"

# --- 5. verify -----------------------------------------------------------------------------
step 5 "verifying in a throwaway container (offline, read-only mounts, as the server sees them)"
VERIFY_ARGS=(
    --network none
    -v "$ENV_STAGE:/root/.local:ro" -v "$MODELS_MOUNT:/root/.cache/huggingface:ro"
    -e RERANKER_MODEL="$RERANKER_MODEL" -e EMBEDDING_MODEL="$EMBEDDING_MODEL"
)
if [ "$GPU" = 1 ]; then
    if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
        VERIFY_ARGS+=(--gpus all)
    else
        log "no NVIDIA container runtime found: verifying the CUDA build on the CPU"
    fi
fi
docker run --rm "${VERIFY_ARGS[@]}" "$BOOTSTRAP_IMAGE" verify ||
    fail "the staged ML env did not pass its check" "read the report above; ./$PROG --force starts from scratch"

# --- 6. swap -------------------------------------------------------------------------------
step 6 "swapping the verified env in"
swap() {  # swap STAGE LIVE: rename only (same parent folder), then delete the old one
    local old="$2.previous"
    remove_tree "$old"
    if [ -e "$2" ]; then mv "$2" "$old" || fail "cannot rename $2" "check the permissions of $(dirname "$2")"; fi
    mv "$1" "$2" || { [ -e "$old" ] && mv "$old" "$2"; fail "cannot move $1 to $2" "check the permissions of $(dirname "$2")"; }
    remove_tree "$old" || log "could not delete $old; remove it by hand"
}
[ "$MODELS_STEP" = keep ] || swap "$MODELS_STAGE" "$MODELS_DIR"
swap "$ENV_STAGE" "$ML_ENV_DIR"
log "ML env ready: $ML_ENV_DIR ($(du -sh "$ML_ENV_DIR" 2>/dev/null | cut -f1)), models: $MODELS_DIR ($(du -sh "$MODELS_DIR" 2>/dev/null | cut -f1))"
log "next: docker compose up -d (a running server: docker compose restart server), then: docker exec ragserver ragserver check-ml"
