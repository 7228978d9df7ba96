"""Fallback audit where pip-audit's sources cannot be reached: PyPI's project JSON.

    python reliability/audit_latest.py /tmp/ragserver-reliability/audit/image-freeze.txt

pip-audit asks PyPI's per-version endpoint (`/pypi/<name>/<version>/json`) or OSV; where
neither answers (this machine: the per-version endpoint is 404 behind the registry mirror, OSV
has no DNS) the project endpoint (`/pypi/<name>/json`) still does, and its `vulnerabilities`
list is the one of the project's latest release. So a package pinned at its latest release is
audited by that list; an older one is reported as not audited, with the version it lags.
Prints the report as JSON on stdout and a one-line summary on stderr; exit code 1 when a
vulnerability is listed for an audited package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx


def pinned(freeze: Path) -> list[tuple[str, str]]:
    """(name, version) of every `name==version` line of a pip freeze list."""
    rows = []
    for line in freeze.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and not name.startswith("#"):
            rows.append((name, version))
    return rows


def audit(packages: list[tuple[str, str]]) -> dict:
    audited, outdated, unknown, findings = [], [], [], []
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        for name, version in packages:
            response = client.get(f"https://pypi.org/pypi/{name}/json")
            if response.status_code != 200:
                unknown.append(f"{name}=={version} (HTTP {response.status_code})")
                continue
            project = response.json()
            latest = project["info"]["version"]
            if latest != version:
                outdated.append(f"{name}=={version} (latest {latest})")
                continue
            audited.append(f"{name}=={version}")
            for vuln in project.get("vulnerabilities") or []:
                findings.append({"package": f"{name}=={version}", "id": vuln.get("id"), "fixed": vuln.get("fixed_in")})
    return {"audited": audited, "findings": findings, "not_audited_older": outdated, "not_found": unknown}


def main() -> int:
    report = audit(pinned(Path(sys.argv[1])))
    print(json.dumps(report, indent=1))
    print(  # the summary goes to stderr, so stdout stays one JSON document
        f"audited {len(report['audited'])} (at their latest release), vulnerabilities {len(report['findings'])}, "
        f"older than latest (not audited) {len(report['not_audited_older'])}, not on PyPI {len(report['not_found'])}",
        file=sys.stderr,
    )
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
