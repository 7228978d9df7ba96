"""The ML env probe and ml-env.json: every state a host can be in, and the fix it is told.

`missing` and `broken` run the probe in a fresh interpreter started with `-S` (no site-packages:
what the slim server image is without the ./ml-env mount), with only ragserver on PYTHONPATH,
so the dev venv's torch cannot hide the state under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ragserver
from ragserver.ml.manifest import build_manifest, python_minor, read_manifest, write_manifest
from ragserver.ml.probe import probe_env

OURS = f"{sys.version_info.major}.{sys.version_info.minor}"
SRC = str(Path(ragserver.__file__).parent.parent)


def _probe_without_site(env_dir: Path) -> dict:
    """probe_env in `python -S` with only ragserver importable (no venv packages, no torch)."""
    code = (
        "import json, sys; from pathlib import Path; from ragserver.ml.probe import probe_env; "
        "print(json.dumps(probe_env(Path(sys.argv[1])).to_dict()))"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(env_dir)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _env_with_torch(tmp_path: Path, init_source: str, *, manifest: dict | None) -> Path:
    """An ML env folder laid out like the bootstrap's pip --user base, with a given torch/__init__.py."""
    env_dir = tmp_path / "ml-env"
    torch_dir = env_dir / "lib" / f"python{OURS}" / "site-packages" / "torch"
    torch_dir.mkdir(parents=True)
    (torch_dir / "__init__.py").write_text(init_source)
    if manifest is not None:
        write_manifest(env_dir, manifest)
    return env_dir


def test_missing_when_no_manifest_and_no_torch(tmp_path: Path) -> None:
    status = _probe_without_site(tmp_path)
    assert status["state"] == "missing", status
    assert "torch" in status["reason"] and "ml-env.json" in status["reason"]
    assert status["fix"] == "./bootstrap-ml-env.sh"


def test_broken_when_torch_shared_library_fails(tmp_path: Path) -> None:
    """The mounted env's torch raises OSError on import (a broken .so): broken, with the error text."""
    source = 'raise OSError("libtorch_cpu.so: cannot open shared object file: No such file or directory")\n'
    env_dir = _env_with_torch(tmp_path, source, manifest={"python": f"{OURS}.0", "torch": {"version": "2.13.0"}})
    status = _probe_without_site(env_dir)
    assert status["state"] == "broken", status
    assert "libtorch_cpu.so: cannot open shared object file" in status["reason"]
    assert "OSError" in status["reason"]
    assert status["fix"] == "./bootstrap-ml-env.sh --force"
    assert status["manifest"]["python"] == f"{OURS}.0"


def test_broken_when_manifest_exists_but_torch_is_gone(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"python": f"{OURS}.1"})
    status = _probe_without_site(tmp_path)
    assert status["state"] == "broken", status
    assert "torch" in status["reason"]
    assert status["fix"] == "./bootstrap-ml-env.sh --force"


def test_broken_when_a_fake_torch_raises_anything(tmp_path: Path) -> None:
    """No manifest, but a torch package whose import raises a non-import error: still broken, not missing."""
    env_dir = _env_with_torch(tmp_path, 'raise RuntimeError("CUDA driver initialization failed")\n', manifest=None)
    status = _probe_without_site(env_dir)
    assert status["state"] == "broken", status
    assert "CUDA driver initialization failed" in status["reason"]


def test_incompatible_python_minor(tmp_path: Path) -> None:
    other = "3.10.14" if OURS != "3.10" else "3.12.1"
    write_manifest(tmp_path, {**build_manifest([]), "python": other})
    status = probe_env(tmp_path)
    assert status.state == "incompatible"
    assert other.rsplit(".", 1)[0] in status.reason and OURS in status.reason
    assert status.fix == "./bootstrap-ml-env.sh --force"
    assert status.manifest["python"] == other


def test_broken_when_manifest_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "ml-env.json").write_text("{not json")
    status = probe_env(tmp_path)
    assert status.state == "broken" and "ml-env.json" in status.reason
    assert status.fix == "./bootstrap-ml-env.sh --force"


def test_ready_without_manifest_in_a_dev_venv(tmp_path: Path) -> None:
    import torch

    status = probe_env(tmp_path)
    assert status.state == "ready", status
    assert "no ml-env.json" in status.reason
    assert status.torch == torch.__version__ and status.fix is None


def test_ready_with_matching_manifest(tmp_path: Path) -> None:
    manifest = build_manifest([{"id": "Qwen/Qwen3-Reranker-0.6B", "revision": "abc"}])
    write_manifest(tmp_path, manifest)
    status = probe_env(tmp_path)
    assert status.state == "ready", status
    assert "ml-env.json ok" in status.reason and "note" not in status.reason
    assert status.manifest == manifest


def test_ready_notes_a_torch_other_than_the_manifests(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"python": f"{OURS}.0", "torch": {"version": "0.0.1", "variant": "cuda"}})
    status = probe_env(tmp_path)
    assert status.state == "ready" and "manifest lists torch 0.0.1" in status.reason


def test_manifest_has_the_documented_fields(tmp_path: Path) -> None:
    import torch

    manifest = build_manifest([{"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "r1"}])
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "ml-env.json"
    loaded = read_manifest(tmp_path)
    assert loaded["format"] == 1 and loaded["created_at"].endswith("+00:00")
    assert python_minor(loaded) == OURS
    assert loaded["torch"] == {
        "version": torch.__version__,
        "variant": "cpu" if not torch.version.cuda else "cuda",
        "cuda": torch.version.cuda,
    }
    assert {"torch", "sentence-transformers", "transformers"} <= set(loaded["packages"])
    assert loaded["models"] == [{"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "r1"}]


@pytest.mark.parametrize(
    ("value", "minor"),
    [("3.11.7", "3.11"), ("3.11", "3.11"), (" 3.12.0 ", "3.12"), ("3", None), ("x.y", None), (311, None), (None, None)],
)
def test_python_minor_is_read_tolerantly(value, minor) -> None:
    assert python_minor({"python": value}) == minor


def test_manifest_cli_writes_and_shows(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "ragserver.ml.manifest"]
    written = subprocess.run(
        [*run, "write", str(tmp_path), "--model", "Qwen/Qwen3-Reranker-0.6B@deadbeef", "--model", "org/m"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert written.stdout.strip() == str(tmp_path / "ml-env.json")
    shown = json.loads(
        subprocess.run([*run, "show", str(tmp_path)], capture_output=True, text=True, timeout=60, check=True).stdout
    )
    assert shown["models"] == [
        {"id": "Qwen/Qwen3-Reranker-0.6B", "revision": "deadbeef"},
        {"id": "org/m", "revision": "main"},
    ]
    assert python_minor(shown) == OURS
