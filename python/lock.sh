#!/usr/bin/env bash
# Refresh the hashed lock files from pyproject.toml (README "Tests"); commit them with the pyproject change.
#   requirements/server.lock  the server's own dependencies and the build backend: Dockerfile.server installs it
#   requirements/dev.lock     server + ml + dev extras for ../run-tests.sh, pinned to server.lock's versions;
#                             torch itself is left out (requirements/torch.txt pins its CPU build), its
#                             dependencies are resolved against that CPU wheel, so no CUDA package gets in
# Existing pins stay unless pyproject needs others; extra arguments go to uv, e.g. `--upgrade` or
# `--upgrade-package fastapi`. Needs uv (on PATH, or the dev env's from ./run-tests.sh) and network access to
# PyPI; RAGSERVER_TORCH_WHEELS names where the CPU torch wheel is (a folder or a find-links page).
set -euo pipefail
cd "$(dirname "$0")"
wheels=${RAGSERVER_TORCH_WHEELS:-/opt/wheels}
uv=$(command -v uv || echo "${RAGSERVER_VENV:-../.venv}/bin/uv")

build_requires() {
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
}

# --python-version 3.11 resolves for every 3.11 patch release: the image's Debian python is an early one.
compile() {
    "$uv" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --custom-compile-command "python/lock.sh" pyproject.toml - "$@"
}

build_requires | compile -o requirements/server.lock "${@}"
build_requires | compile --extra ml --extra dev -c requirements/server.lock -c requirements/torch.txt \
    --find-links "$wheels" --no-emit-package torch -o requirements/dev.lock "${@}"

if grep -E -i '^(torch|nvidia-|triton)' requirements/dev.lock; then
    echo "requirements/dev.lock holds torch or CUDA packages; resolve against the CPU wheel" >&2
    exit 1
fi
