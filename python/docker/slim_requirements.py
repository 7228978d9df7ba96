"""Print the server image's requirements: the hashed server lock minus what crawl4ai's crawl path never imports.

Why: crawl4ai declares patchright, litellm (with openai), nltk and alphashape (with scipy, shapely) as hard
dependencies, heavy ones (sizes in DOCKER_ML_CLEANUP_IMPLEMENTATION.md), yet imports them only inside functions
the server never calls (LLM extraction, stealth browsers, NLTK chunking, alpha shapes). The image installs the
filtered lock with --no-deps, so crawl4ai goes in without them. The filter walks the lock's own "# via"
annotations: a package stays when a path from our direct dependencies reaches it without passing through a
skipped one, so whatever only the skipped packages pulled in goes too, and a re-lock needs no edit here.

Usage: python slim_requirements.py requirements/server.lock > requirements.txt
"""

from __future__ import annotations

import re
import sys
from collections import deque
from dataclasses import dataclass, field

# crawl4ai dependencies the server's crawl path never imports (measured: `import crawl4ai` and the crawl
# tests inside the image, see DOCKER_ML_CLEANUP_IMPLEMENTATION.md).
SKIP = frozenset({"unclecode-litellm", "patchright", "playwright-stealth", "nltk", "alphashape", "shapely"})
# Imported at module level by crawl4ai (table_extraction) but reached in the lock only through litellm.
KEEP = frozenset({"tiktoken"})
# How uv's annotations name an input (the project itself, or a requirements file): its packages are the roots.
INPUT_PARENT = re.compile(r"^(ragserver \(pyproject\.toml\)|-r .*)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(\S.*)$")


def normalize(name: str) -> str:
    """A project name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Locked:
    """One pinned package of the lock: its lines (requirement and hashes) and who required it."""

    lines: list[str]
    parents: list[str] = field(default_factory=list)

    @property
    def is_root(self) -> bool:
        """A direct dependency of ours, or an input given without a file (the build backend)."""
        return not self.parents or any(INPUT_PARENT.match(parent) for parent in self.parents)


def parse_lock(text: str) -> dict[str, Locked]:
    """The lock's packages by normalized name, in file order, with their "# via" parents."""
    packages: dict[str, Locked] = {}
    current: Locked | None = None
    in_via = False
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = packages[normalize(pin.group(1))] = Locked([line])
            in_via = False
        elif current is None:
            continue
        elif line.lstrip().startswith("--hash="):
            current.lines.append(line)
        elif line.strip() == "# via":
            in_via = True
        elif (via := _VIA.match(line)) and (in_via or line.lstrip().startswith("# via ")):
            current.parents.append(via.group(1).strip())
    return packages


def slim(packages: dict[str, Locked]) -> list[str]:
    """Names kept: reachable from the roots (and KEEP) without passing through SKIP, in lock order."""
    children: dict[str, list[str]] = {name: [] for name in packages}
    for name, locked in packages.items():
        for parent in locked.parents:
            if normalize(parent) in children:
                children[normalize(parent)].append(name)
    queue = deque(name for name, locked in packages.items() if locked.is_root or name in KEEP)
    kept: set[str] = set()
    while queue:
        name = queue.popleft()
        if name in kept or name in SKIP:
            continue
        kept.add(name)
        queue.extend(children[name])
    return [name for name in packages if name in kept]


def main(lock_path: str) -> None:
    with open(lock_path) as handle:
        packages = parse_lock(handle.read())
    missing = KEEP - packages.keys()
    if missing:
        sys.exit(f"{lock_path} no longer pins {sorted(missing)}: update KEEP in {__file__}")
    print("\n".join(line for name in slim(packages) for line in packages[name].lines))


if __name__ == "__main__":
    main(sys.argv[1])
