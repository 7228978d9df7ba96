#!/usr/bin/env bash
# Runs INSIDE the bootstrap container (Dockerfile.server.bootstrap); ../bootstrap-ml-env.sh drives it.
#
#   extract-ml-env.sh install   fill the staging ML env (/root/.local) and model cache (/root/.cache/huggingface)
#   extract-ml-env.sh verify    prove the staged env works: imports, models, one embedding, one rerank score
#
# The host mounts STAGING folders at the real paths, never the live ones, so a failure here
# leaves the previous ML env untouched; the host swaps them in only after `verify` passed.
#
# Mounts:  /root/.local (rw)             staging ML env (pip --user site + ml-env.json)
#          /root/.cache/huggingface      staging HF cache (rw), or the live one (ro) when MODELS_STEP=keep
#          /current/env (ro, optional)   the live ML env, copied when only the models changed
#          /wheels (ro, optional)        a wheelhouse (--find-links)
#          /import (ro, optional)        local models (--model-dir): an HF cache or <org>/<name> folders
# Environment (set by the host script):
#   ENV_STEP=install|copy  MODELS_STEP=fetch|import|keep  TORCH_VERSION  TORCH_VARIANT=cpu|cuda
#   TORCH_INDEX_URL  ML_PACKAGES (default: pyproject's `ml` extra)  MODELS (space-separated HF ids)  ENV_STAMP  MODELS_STAMP
set -euo pipefail

ENV_DIR=/root/.local
HUB_DIR=${HF_HOME:-/root/.cache/huggingface}/hub

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

ml_extra() {  # pyproject's `ml` extra without torch (installed first, from the PyTorch index)
    python - <<'PY'
import re, tomllib
extra = tomllib.load(open("/opt/ragserver/pyproject.toml", "rb"))["project"]["optional-dependencies"]["ml"]
print(" ".join(r for r in extra if re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() != "torch"))
PY
}

install_env() {
    ML_PACKAGES=${ML_PACKAGES:-$(ml_extra)}
    local links=()
    [ -d /wheels ] && links=(--find-links /wheels)
    local torch_src=(--index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple)
    local where="the index $TORCH_INDEX_URL"
    # A wheelhouse replaces the PyTorch index (air-gapped or CI); other packages still come from PyPI.
    if [ -d /wheels ]; then torch_src=("${links[@]}") where="the wheelhouse given with --find-links"; fi
    log "installing torch==$TORCH_VERSION ($TORCH_VARIANT) into the staging env"
    pip install --user --no-warn-script-location "${torch_src[@]}" "torch==$TORCH_VERSION" \
        || die "pip could not install torch==$TORCH_VERSION from $where; check TORCH_VERSION and that source"
    log "installing $ML_PACKAGES"
    # Pinning torch again keeps pip from swapping in another build while resolving the rest.
    # shellcheck disable=SC2086  # ML_PACKAGES is a list of requirement specifiers
    pip install --user --no-warn-script-location "${links[@]}" $ML_PACKAGES "torch==$TORCH_VERSION" \
        || die "pip could not install $ML_PACKAGES"
}

copy_env() {  # the packages are unchanged (only the models or the manifest change): carry them over
    [ -d /current/env ] || die "the current ML env is not mounted; rerun with --force"
    log "packages unchanged: copying them from the current ML env"
    cp -a /current/env/. "$ENV_DIR"/
}

fetch_models() {
    local id
    for id in $MODELS; do
        log "downloading $id into the HF cache"
        python - "$id" <<'PY' || die "download of $id failed: check the model id, the network, or use --model-dir"
import sys
from huggingface_hub import snapshot_download

print(snapshot_download(repo_id=sys.argv[1]))
PY
    done
}

cache_entry() { printf 'models--%s' "${1//\//--}"; }

import_models() {
    local id entry src rev
    mkdir -p "$HUB_DIR"
    for id in $MODELS; do
        entry=$(cache_entry "$id")
        if [ -d "/import/hub/$entry" ] || [ -d "/import/$entry" ]; then
            src=/import/hub/$entry
            [ -d "$src" ] || src=/import/$entry
            log "importing $id from the HF cache in --model-dir"
            cp -a "$src" "$HUB_DIR/"
        elif [ -f "/import/$id/config.json" ]; then
            # A plain model folder: lay it out as a cache entry whose revision is a hash of its files.
            rev=local-$(cd "/import/$id" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -c1-32)
            log "importing $id from the folder --model-dir/$id (revision $rev)"
            mkdir -p "$HUB_DIR/$entry/snapshots/$rev" "$HUB_DIR/$entry/refs"
            cp -a "/import/$id"/. "$HUB_DIR/$entry/snapshots/$rev/"
            printf '%s' "$rev" > "$HUB_DIR/$entry/refs/main"
        else
            die "--model-dir has no $id (expected hub/$entry, $entry or $id/config.json)"
        fi
    done
}

write_manifest() {
    local id rev args=()
    for id in $MODELS; do
        rev=$(cat "$HUB_DIR/$(cache_entry "$id")/refs/main" 2>/dev/null) || die "$id is not in the HF cache after the models step"
        args+=(--model "$id@$rev")
    done
    log "writing ml-env.json"
    python -m ragserver.ml.manifest write "$ENV_DIR" "${args[@]}" > /dev/null
    python -m ragserver.ml.manifest show "$ENV_DIR"
}

install() {
    [ -w "$ENV_DIR" ] || die "the staging ML env is not mounted writable at $ENV_DIR"
    case "$ENV_STEP" in
        install) install_env ;;
        copy) copy_env ;;
        *) die "ENV_STEP must be install or copy" ;;
    esac
    case "$MODELS_STEP" in
        fetch) fetch_models ;;
        import) import_models ;;
        keep) log "models unchanged: using the current cache (mounted read-only)" ;;
        *) die "MODELS_STEP must be fetch, import or keep" ;;
    esac
    write_manifest
    # Stamps of the inputs: the host compares them to skip a run when nothing changed.
    printf '%s\n' "$ENV_STAMP" > "$ENV_DIR/.bootstrap-stamp"
    [ "$MODELS_STEP" = keep ] || printf '%s\n' "$MODELS_STAMP" > "${HF_HOME:-/root/.cache/huggingface}/.bootstrap-stamp"
    log "staging complete"
}

verify() {
    log "verifying the staged env offline with the server's own check (check-ml)"
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    python -c 'import sys; from ragserver.cli import main; sys.exit(main(["check-ml"]))' || die "the staged ML env failed its check (see the report above)"
}

case "${1:-install}" in
    install) install ;;
    verify) verify ;;
    *) die "usage: extract-ml-env.sh install|verify" ;;
esac
