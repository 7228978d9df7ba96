"""Schemathesis against a real `ragserver serve`: every generated request answered < 500 and as documented.

    python python/reliability/api_fuzz.py --max-examples 60          # ~3,000 requests, a few minutes

Starts the server (embedded Postgres in a fresh data dir under /tmp/ragserver-reliability, MiniLM,
tiny Qwen3 reranker, RAGSERVER_API_KEY set), runs `st run` with every check enabled (status codes,
content types, response schemas, negative/positive data, unsupported methods, stateful links)
and the settings in schemathesis.toml, then counts the requests of the HAR report by status.
Exit code 0 only when schemathesis passed, at least --min-requests were sent and none got a 5xx.
The fast tier runs a short version of the same (tests/test_api_fuzz.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"


def st_command(
    base_url: str, api_key: str, report_dir: Path, *, max_examples: int, phases: str, seed: int
) -> list[str]:
    """The `st run` command line shared by this script and the fast-tier test."""
    return [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "-H",
        f"Authorization: Bearer {api_key}",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        "--workers",
        "2",
        "--seed",
        str(seed),
        "--request-timeout",
        "60",
        "--no-color",
        "--generation-database",
        "none",
        "--report",
        "har",
        "--report-dir",
        str(report_dir),
    ]


def count_statuses(report_dir: Path) -> collections.Counter:
    """Requests per HTTP status in the HAR report(s) schemathesis wrote."""
    statuses: collections.Counter = collections.Counter()
    for har in report_dir.glob("har-*.json"):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            statuses[entry["response"]["status"]] += 1
    return statuses


def main() -> int:
    from harness import API_KEY, ServerProcess, model_env, new_data_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=60, help="per operation and phase")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--min-requests", type=int, default=1000)
    args = parser.parse_args()

    data_dir = new_data_dir("api-fuzz-")
    server = ServerProcess({**model_env(), "DATA_DIR": str(data_dir), "MAX_UPLOAD_MB": "2"}, data_dir / "server.log")
    server.start()
    try:
        server.wait_ready()
        report_dir = data_dir / "report"
        started = time.monotonic()
        command = st_command(
            server.base_url, API_KEY, report_dir, max_examples=args.max_examples, phases=args.phases, seed=args.seed
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        elapsed = time.monotonic() - started
        alive = server.process is not None and server.process.poll() is None
    finally:
        server.stop()
    statuses = count_statuses(report_dir)
    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(result.stdout[-3000:])
    print(f"requests: {total} in {elapsed:.0f} s; by status: {dict(sorted(statuses.items()))}")
    print(f"5xx: {server_errors}; schemathesis exit code: {result.returncode}; server alive after run: {alive}")
    print(f"server log: {server.log_path}; 'Traceback' lines in it: {server.log_text().count('Traceback')}")
    ok = result.returncode == 0 and server_errors == 0 and total >= args.min_requests and alive
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
