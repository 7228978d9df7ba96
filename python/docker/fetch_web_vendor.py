"""Fetch the web page's pinned browser libraries (web/vendor.json) from the npm registry into a folder.

Why: the page uses a few third-party ES modules (the Socket.IO client, markdown-it) that must come
from their registry at build time, pinned and verified, never pasted into the repository. Each
tarball is checked against npm's sha512 `integrity`, only the named file (and the package's
LICENSE, written as <package>.LICENSE) is taken out of it, and the file is checked against the
recorded sha256. A file already there with that sha256 is kept, so a second run downloads nothing.
Stdlib only: it runs in a bare Python image and in ./run-tests.sh setup alike. The server never
runs it; it never downloads anything at start.

Usage: python fetch_web_vendor.py <dest> [--manifest vendor.json]
Environment: NPM_CONFIG_REGISTRY (a registry mirror; default https://registry.npmjs.org/).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "src" / "ragserver" / "web" / "vendor.json"
NPM_REGISTRY = "https://registry.npmjs.org/"
TIMEOUT_S = 60
MAX_TARBALL_BYTES = 50 * 1024 * 1024


class VendorError(Exception):
    """A library that could not be fetched or did not verify; the message says which and why."""


@dataclass(frozen=True)
class VendorFile:
    """One pinned file of vendor.json."""

    package: str
    version: str
    tarball: str
    integrity: str
    file: str
    license: str
    serve_as: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.package}@{self.version}"


def read_manifest(path: Path) -> list[VendorFile]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
        return [VendorFile(**entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VendorError(f"cannot read the manifest {path}: {exc}") from exc


def tarball_url(entry: VendorFile, registry: str | None) -> str:
    """The tarball's URL at `registry` (a mirror keeps npm's paths), else the recorded one."""
    if not registry or not entry.tarball.startswith(NPM_REGISTRY):
        return entry.tarball
    return registry.rstrip("/") + "/" + entry.tarball.removeprefix(NPM_REGISTRY)


def download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise VendorError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
    if len(data) > MAX_TARBALL_BYTES:
        raise VendorError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes")
    return data


def check_integrity(entry: VendorFile, data: bytes, url: str) -> None:
    """npm's Subresource-Integrity form: 'sha512-' + base64 of the tarball's SHA-512."""
    algorithm, _, expected = entry.integrity.partition("-")
    if algorithm != "sha512":
        raise VendorError(f"{entry.label}: only sha512 integrity is accepted, got {entry.integrity!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise VendorError(f"{entry.label}: the tarball from {url} fails its integrity check (sha512-{actual})")


def member_bytes(archive: tarfile.TarFile, name: str, entry: VendorFile) -> bytes:
    """A regular file's bytes, read from the archive without extracting anything to disk."""
    try:
        member = archive.getmember(name)
    except KeyError as exc:
        raise VendorError(f"{entry.label}: the tarball has no {name}") from exc
    extracted = archive.extractfile(member) if member.isfile() else None
    if extracted is None:
        raise VendorError(f"{entry.label}: {name} in the tarball is not a regular file")
    return extracted.read()


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def write_atomically(path: Path, data: bytes) -> None:
    """Written beside and renamed, so a stopped run never leaves half a file that looks fetched."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def fetch(entry: VendorFile, dest: Path, registry: str | None) -> bool:
    """Put the entry's file and licence into dest; False when they were already there."""
    target = dest / entry.serve_as
    licence = dest / f"{entry.package}.LICENSE"
    if sha256_of(target) == entry.sha256 and licence.is_file():
        return False
    url = tarball_url(entry, registry)
    data = download(url)
    check_integrity(entry, data, url)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            content = member_bytes(archive, entry.file, entry)
            licence_text = member_bytes(archive, entry.license, entry)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VendorError(f"{entry.label}: the tarball from {url} cannot be read: {exc}") from exc
    actual = hashlib.sha256(content).hexdigest()
    if actual != entry.sha256:
        raise VendorError(f"{entry.label}: {entry.file} has sha256 {actual}, vendor.json records {entry.sha256}")
    write_atomically(target, content)
    write_atomically(licence, licence_text)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder to write the files into (created if missing)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="vendor.json to read")
    args = parser.parse_args(argv)
    registry = os.environ.get("NPM_CONFIG_REGISTRY")
    try:
        entries = read_manifest(args.manifest)
        args.dest.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            fetched = fetch(entry, args.dest, registry)
            print(f"fetch_web_vendor: {entry.label} {entry.serve_as}: {'fetched' if fetched else 'already there'}")
    except (VendorError, OSError) as exc:
        print(f"fetch_web_vendor: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
