#!/usr/bin/env bash
# pip-audit of the packages inside the server image (the exact set `pip freeze` reports there).
#
#   python/reliability/audit_image.sh [image]        default image: ragserver:e2e (tests/e2e builds it)
#
# Needs the Docker engine (../shared/docker-sandbox/up here) and network access to an advisory
# source: pip-audit's default (PyPI's per-version JSON API) or OSV (-s osv). Writes the freeze list
# and the JSON report next to this script's output folder and prints the findings.
set -euo pipefail
image=${1:-ragserver:e2e}
out=${OUT_DIR:-/tmp/ragserver-reliability/audit}
mkdir -p "$out"
docker run --rm --entrypoint pip "$image" freeze --exclude ragserver > "$out/image-freeze.txt"
echo "$(wc -l < "$out/image-freeze.txt") packages in $image"
for service in pypi osv; do
    echo "== pip-audit -s $service"
    pip-audit -r "$out/image-freeze.txt" --no-deps --disable-pip -s "$service" --desc on \
        -f json -o "$out/pip-audit-$service.json" || true
    python3 - "$out/pip-audit-$service.json" <<'PY' || true
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
audited = [d for d in deps if "skip_reason" not in d]
vulns = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in audited for v in d.get("vulns", [])]
print(f"audited {len(audited)} of {len(deps)}; skipped {len(deps) - len(audited)}; vulnerabilities {len(vulns)}")
for row in vulns:
    print("  ", *row)
PY
done
echo "== fallback: PyPI project JSON (packages at their latest release)"
python3 "$(dirname "$0")/audit_latest.py" "$out/image-freeze.txt" > "$out/audit-latest.json" || true
