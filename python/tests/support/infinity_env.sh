#!/usr/bin/env bash
# Builds the virtualenv of the Infinity server (infinity-emb) that tests/test_ml_remote_infinity.py starts; those
# tests skip, saying so, until it exists. Its own venv because Infinity pins sentence-transformers < 4 and
# numpy < 2. Torch is the CPU build of requirements/torch.txt: from /opt/wheels when that wheelhouse exists,
# else from the PyTorch CPU index. Idempotent: a second run only checks that everything is installed.
#
#   tests/support/infinity_env.sh            # -> $INFINITY_VENV (default ~/.cache/ragserver/infinity-venv)
set -euo pipefail

python_dir="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${INFINITY_VENV:-$HOME/.cache/ragserver/infinity-venv}"
python="${PYTHON:-python3.11}"

if [ -d /opt/wheels ]; then
    torch_source=(--find-links /opt/wheels)
else
    torch_source=(--index-url https://download.pytorch.org/whl/cpu)
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet --no-deps "${torch_source[@]}" -r "$python_dir/requirements/torch.txt"
"$venv/bin/pip" install --quiet -r "$python_dir/requirements/infinity.txt"
"$venv/bin/infinity_emb" v2 --help > /dev/null
echo "$venv"
