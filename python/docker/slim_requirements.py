"""Print the server image's requirements: pyproject's dependencies, crawl4ai's minus what we never import.

Why: crawl4ai 0.9 declares patchright, litellm (with openai), nltk and alphashape (with scipy,
shapely) as hard dependencies, about 400 MB, yet imports them only inside functions the server
never calls (LLM extraction, stealth browsers, NLTK chunking, alpha shapes). The image installs
crawl4ai itself with --no-deps and these requirements beside it; version specifiers come from
crawl4ai's own metadata so an upgrade keeps its pins. Run after `pip install --no-deps crawl4ai`.

Usage: python slim_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import requires

# crawl4ai dependencies the server's crawl path never imports (measured: `import crawl4ai` and the
# crawl tests inside the image, see DOCKER_ML_CLEANUP_IMPLEMENTATION.md).
SKIP = {"unclecode-litellm", "patchright", "playwright-stealth", "nltk", "alphashape", "shapely"}
# Imported at module level by crawl4ai (table_extraction) but declared only through litellm.
ADD = ["tiktoken"]


def _name(requirement: str) -> str:
    """The normalized project name at the start of a requirement string."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else ""


def main(pyproject: str) -> None:
    with open(pyproject, "rb") as handle:
        ours = tomllib.load(handle)["project"]["dependencies"]
    lines = [req for req in ours if _name(req) != "crawl4ai"]
    # Requirements with a marker belong to crawl4ai's extras (torch, transformer, ...): not needed.
    lines += [req for req in requires("crawl4ai") or [] if ";" not in req and _name(req) not in SKIP]
    lines += ADD
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
