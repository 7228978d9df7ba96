"""Remote-model fixtures (owned by the REMOTE room): the model-server stand-in, fed by the test MiniLM.

- `minilm_embed`: texts -> normalized all-MiniLM-L6-v2 vectors (the stand-in's numbers), session-wide.
- `standin`: a started ModelServerStandin (support.remote_standin), one per test: faults do not leak.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.remote_standin import Embed, ModelServerStandin


@pytest.fixture(scope="session")
def minilm_embed(minilm_dir: Path) -> Embed:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir), device="cpu")
    lock = threading.Lock()  # the stand-in answers requests in several threads; a fast tokenizer is not thread-safe

    def embed(texts: list[str]) -> list[list[float]]:
        with lock:
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()

    return embed


@pytest.fixture
def standin(minilm_embed: Embed) -> Iterator[ModelServerStandin]:
    server = ModelServerStandin(minilm_embed).start()
    yield server
    server.stop()
