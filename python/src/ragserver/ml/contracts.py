"""The small contracts the rest of the server sees of the models.

The API and the services talk to these, so a real Qwen3 reranker, a classic cross-encoder or
a tiny test model are interchangeable. They declare everything MLService and the worker use of a
model, so a new implementation that type-checks against them also runs. Implementations are
blocking; ml.worker runs them off the event loop.
"""

from __future__ import annotations

from typing import Protocol


class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension."""

    model_name: str
    dimension: int
    max_seq_length: int

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token count of each text under the model's tokenizer (used to size chunks); thread-safe."""
        ...

    def measure(self, texts: list[str]) -> list[int]:
        """count_tokens for the ML worker's inference threads only (sizes its batches without a shared lock)."""
        ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Normalized embeddings, one per text, in input order."""
        ...


class Reranker(Protocol):
    """Scores (query, document) pairs; higher is more relevant, in [0, 1]."""

    model_name: str
    kind: str  # how it scores, shown in /health: "causal-lm-yes-no" | "cross-encoder"

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Tokens each pair costs the model (the worker sizes its batches with it, searches their rerank
        budget); thread-safe."""
        ...

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Relevance of each pair in input order."""
        ...
