"""`ml-env.json`: what the bootstrap put into the external ML env, read at every start.

The bootstrap container (python/extract-ml-env.sh) writes it with `python -m ragserver.ml.manifest
write` once the packages are installed; this docstring is the format's specification and the
reader below is tolerant (unknown keys ignored, missing keys -> None), so a manifest written by
another release still reads.

File: `<ML_USER_BASE>/ml-env.json` (the pip --user base, /root/.local in Docker)::

    {
      "format": 1,
      "created_at": "2026-11-21T12:00:00+00:00",     ISO 8601, UTC
      "python": "3.11.7",                            interpreter that installed the packages
      "torch": {"version": "2.13.0+cpu",             torch.__version__
                "variant": "cpu",                     "cpu" | "cuda"
                "cuda": null},                        torch.version.cuda, or null
      "packages": {"sentence-transformers": "6.2.0", "transformers": "5.23.0", ...},
      "models": [{"id": "Qwen/Qwen3-Reranker-0.6B", "revision": "<commit sha>"}, ...]
    }

Only `python` is load-bearing (its minor version must equal the server's: compiled wheels
are per minor version); the rest is reported in /health and by `ragserver check-ml`.
A dev venv with torch installed needs no manifest.

`python -m ragserver.ml.manifest write DIR --model ID@REV ...` writes one from the running
interpreter (for hosts that install the ML env without the bootstrap image);
`python -m ragserver.ml.manifest show DIR` prints the parsed file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

FILENAME = "ml-env.json"
FORMAT = 1
PACKAGES = ("torch", "sentence-transformers", "transformers", "tokenizers", "huggingface-hub", "safetensors")


class ManifestError(ValueError):
    """ml-env.json exists but is not a JSON object."""


def read_manifest(env_dir: Path) -> dict[str, Any] | None:
    """The parsed manifest of `env_dir`, None when there is none; ManifestError when unreadable."""
    path = Path(env_dir) / FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def python_minor(manifest: dict[str, Any]) -> str | None:
    """'3.11' from the manifest's python field ('3.11.7' or '3.11'); None when absent or malformed."""
    value = manifest.get("python")
    if not isinstance(value, str):
        return None
    parts = value.strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return f"{parts[0]}.{parts[1]}"


def torch_version(manifest: dict[str, Any]) -> str | None:
    """torch version recorded in the manifest (accepts a bare string too)."""
    torch = manifest.get("torch")
    if isinstance(torch, dict):
        return torch.get("version")
    return torch if isinstance(torch, str) else None


def build_manifest(models: list[dict[str, str]]) -> dict[str, Any]:
    """A manifest describing the running interpreter and its installed packages."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    torch_info: dict[str, Any] = {"version": packages.get("torch"), "variant": None, "cuda": None}
    try:
        import torch

        torch_info = {
            "version": torch.__version__,
            "variant": "cuda" if torch.version.cuda else "cpu",
            "cuda": torch.version.cuda,
        }
    except Exception:  # the manifest still records what is installed
        torch_info["variant"] = "unknown"
    return {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": ".".join(str(v) for v in sys.version_info[:3]),
        "torch": torch_info,
        "packages": packages,
        "models": models,
    }


def write_manifest(env_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest` as `env_dir`/ml-env.json (atomically: readers never see half a file)."""
    env_dir = Path(env_dir)
    env_dir.mkdir(parents=True, exist_ok=True)
    path = env_dir / FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _model_arg(value: str) -> dict[str, str]:
    repo_id, _, revision = value.partition("@")
    return {"id": repo_id, "revision": revision or "main"}


def main(argv: list[str] | None = None) -> None:
    """CLI: write or show a manifest."""
    parser = argparse.ArgumentParser(prog="python -m ragserver.ml.manifest", description="ml-env.json tool")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write ml-env.json for the running interpreter")
    write.add_argument("dir", type=Path)
    write.add_argument("--model", action="append", default=[], type=_model_arg, help="ID@REVISION, repeatable")
    show = sub.add_parser("show", help="print the parsed ml-env.json")
    show.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "write":
        print(write_manifest(args.dir, build_manifest(args.model)))
    else:
        print(json.dumps(read_manifest(args.dir), indent=2))


if __name__ == "__main__":
    main()
