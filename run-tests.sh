#!/usr/bin/env bash
# The one test command (README "Tests"). On a fresh machine it needs only python3.11 with pip:
#   setup        create or reuse the project virtualenv (.venv, or $RAGSERVER_VENV) and install the locked dev
#                set into it: python/requirements/dev.lock with its hashes, the CPU torch pinned in
#                python/requirements/torch.txt, the package itself (editable). A stamp of those files' hashes
#                skips the install when nothing changed, so a second run starts testing in seconds.
#                Then the web page's pinned browser libraries (python/docker/fetch_web_vendor.py), kept when there.
#   lint tier    ruff check (python/ and tests/e2e)
#   fast tier    python/tests: real embedded Postgres, real MiniLM, a tiny Qwen3 reranker, the type check
#   browser tier python/tests/browser: the web page in headless Chromium and Firefox (Playwright) on live servers.
#                Skipped, saying so, when no Chromium is at $RAGSERVER_CHROMIUM (default /usr/bin/chromium); its
#                Firefox runs skipped when no Firefox is at $RAGSERVER_FIREFOX (default /usr/bin/firefox-esr); with
#                RAGSERVER_REQUIRE_BROWSER=1 (CI) either is a failure.
#   docker tier  tests/e2e: slim image, bootstrap, compose. Skipped, saying so, when no Docker engine answers
#                `docker info`; with RAGSERVER_REQUIRE_DOCKER=1 (CI) that is a failure. RAGSERVER_SKIP_DOCKER=1
#                skips it on purpose.
# Arguments select fast-tier tests and run only those (paths relative to python/):
#   ./run-tests.sh tests/test_docs.py -k readme
# pytest's exit code 5 ("no tests collected") counts as a failure: each tier is expected to run tests.
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${RAGSERVER_VENV:-$ROOT/.venv}
PYTHON=${RAGSERVER_PYTHON:-python3.11}
LOCKED=(python/requirements/dev.lock python/requirements/torch.txt python/pyproject.toml)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { echo "== $*"; }

setup_env() {
    local stamp="$VENV/.ragserver-stamp" want
    want=$(cat "${LOCKED[@]}" | sha256sum | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        say "setup: $VENV is up to date with the lock"
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        command -v "$PYTHON" >/dev/null || { echo "$PYTHON not found (the locks are for Python 3.11): set RAGSERVER_PYTHON" >&2; return 1; }
        say "setup: creating $VENV"
        "$PYTHON" -m venv "$VENV" || return 1
    fi
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
        echo "$VENV is not a Python 3.11 env, which the locks are for: remove it or set RAGSERVER_VENV" >&2
        return 1
    }
    say "setup: installing the locked dev set into $VENV"
    local pip=("$VENV/bin/python" -m pip install -q --no-deps)
    # --no-deps everywhere: the lock is the whole set, so pip resolves nothing and fetches nothing unhashed.
    "${pip[@]}" --require-hashes -r python/requirements/dev.lock || return 1
    "${pip[@]}" -r python/requirements/torch.txt || {
        echo "no $(grep -v '^#' python/requirements/torch.txt) wheel: point pip at a folder holding it" \
            "(PIP_FIND_LINKS) or at https://download.pytorch.org/whl/cpu (PIP_EXTRA_INDEX_URL)" >&2
        return 1
    }
    "${pip[@]}" --no-build-isolation -e python || return 1
    "$VENV/bin/python" -m pip check || return 1
    echo "$want" >"$stamp"
}

run_pytest() {  # tier name, then pytest's arguments; exit code 5 (nothing collected) is a failure
    local name=$1 rc
    shift
    say "$name: pytest $*"
    python -m pytest "$@"
    rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "== $name: no tests were collected; treating that as a failure" >&2
        return 1
    fi
    return "$rc"
}

browser_tier() {
    local chromium=${RAGSERVER_CHROMIUM:-/usr/bin/chromium}
    if [ ! -x "$chromium" ]; then
        if [ "${RAGSERVER_REQUIRE_BROWSER:-0}" = "1" ]; then
            echo "== browser tier: FAILED: RAGSERVER_REQUIRE_BROWSER=1 but no Chromium at $chromium" >&2
            return 1
        fi
        say "browser tier: SKIPPED: no Chromium at $chromium (apt-get install chromium, or set RAGSERVER_CHROMIUM)"
        return 0
    fi
    (cd python && run_pytest "browser tier" -q -p no:cacheprovider tests/browser)
}

docker_tier() {
    if [ "${RAGSERVER_SKIP_DOCKER:-0}" = "1" ]; then
        say "docker tier: SKIPPED (RAGSERVER_SKIP_DOCKER=1)"
        return 0
    fi
    if ! docker info >/dev/null 2>&1; then
        if [ "${RAGSERVER_REQUIRE_DOCKER:-0}" = "1" ]; then
            echo "== docker tier: FAILED: RAGSERVER_REQUIRE_DOCKER=1 but no Docker engine answers \`docker info\`" >&2
            return 1
        fi
        say "docker tier: SKIPPED: no Docker engine answers \`docker info\` (start one: ../shared/docker-sandbox/up)"
        return 0
    fi
    run_pytest "docker tier" -q -p no:cacheprovider tests/e2e
}

started=$SECONDS
setup_env || { echo "== setup failed" >&2; exit 1; }
# The web page's pinned browser libraries (python/src/ragserver/web/vendor.json): kept when already there.
"$VENV/bin/python" python/docker/fetch_web_vendor.py python/src/ragserver/web/static/vendor \
    || { echo "== setup failed: the web page's vendor files (a registry mirror: NPM_CONFIG_REGISTRY)" >&2; exit 1; }
# The Infinity server of tests/test_ml_remote_infinity.py, in a venv of its own (it pins sentence-transformers < 4
# and numpy < 2): built when RAGSERVER_INFINITY=1 (CI sets it; those tests then fail instead of skipping).
if [ "${RAGSERVER_INFINITY:-0}" = "1" ]; then
    export INFINITY_VENV=${INFINITY_VENV:-$ROOT/.venv-infinity}
    PYTHON=$PYTHON python/tests/support/infinity_env.sh >/dev/null \
        || { echo "== setup failed: the Infinity venv (python/tests/support/infinity_env.sh)" >&2; exit 1; }
fi
say "setup: $((SECONDS - started)) s"
. "$VENV/bin/activate"

if [ "$#" -gt 0 ]; then
    (cd python && run_pytest "fast tier (selected)" -q -p no:cacheprovider "$@")
    exit $?
fi

failed=()
say "lint tier: ruff check"
ruff check . || failed+=(lint)
(cd python && run_pytest "fast tier" -q -p no:cacheprovider) || failed+=(fast)
browser_tier || failed+=(browser)
if [ "${#failed[@]}" -eq 0 ]; then
    docker_tier || failed+=(docker)
else
    say "docker tier: not run, earlier tiers failed"
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== FAILED tiers: ${failed[*]}" >&2
    exit 1
fi
say "all tiers passed"
