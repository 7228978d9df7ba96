"""The embedder of an OpenAI-compatible `/v1/embeddings` server (EMBEDDING_BACKEND=openai).

OpenAI, Ollama, vLLM, LM Studio, TEI and Infinity all answer `{"data": [{"index", "embedding"}]}`.
The answer is checked before anything is stored: one finite vector per text, by index, of the
dimension probed at start; a server that breaks that promise fails the batch (RemoteModelError)
rather than putting wrong vectors in the store. Vectors are normalized here, as the local embedder's
are, since not every server does it. No tokenizer is at hand, so token counts are estimates.
"""

from __future__ import annotations

import math
from functools import partial

from ragserver.ml.remote_http import RemoteServer, finite_float, in_batches

# What chunks are sized to when CHUNK_MAX_TOKENS is 0: the remote model's limit is not known here.
REMOTE_MAX_SEQ_LENGTH = 512
PROBE_TEXT = "dimension probe"


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token) when no tokenizer is loaded."""
    return math.ceil(len(text) / 4)


class OpenAIEmbedder:
    """Implements ml.contracts.Embedder over HTTP; `probe()` (once, at start) learns the dimension."""

    def __init__(self, server: RemoteServer, model_name: str, *, batch_size: int) -> None:
        self.server = server
        self.model_name = model_name
        self.batch_size = batch_size
        self.dimension = 0
        self.max_seq_length = REMOTE_MAX_SEQ_LENGTH

    def probe(self) -> int:
        """Embed one tiny text to learn (and from then on enforce) the model's dimension."""
        [vector] = self._request([PROBE_TEXT])
        self.dimension = len(vector)
        return self.dimension

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]

    def measure(self, texts: list[str]) -> list[int]:
        return self.count_tokens(texts)

    def embed(self, texts: list[str], *, quick: bool = False) -> list[list[float]]:
        """Unit-length vectors in input order, EMBEDDING_BATCH_SIZE texts per request (halved on a 413);
        `quick` for a search's query (RemoteServer.post)."""
        return in_batches(partial(self._request, quick=quick), texts, self.batch_size)

    def _request(self, texts: list[str], *, quick: bool = False) -> list[list[float]]:
        body = {"model": self.model_name, "input": texts, "encoding_format": "float"}
        answer = self.server.post("embeddings", body, quick=quick)
        return self._vectors(answer, len(texts))

    def _vectors(self, answer: object, count: int) -> list[list[float]]:
        """The answer's vectors by index, checked and normalized; RemoteModelError when it is garbage."""
        rows = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise self.server.garbage("no `data` list")
        by_index: dict[int, list[float]] = {}
        for row in rows:
            index = row.get("index") if isinstance(row, dict) else None
            vector = _unit_vector(row.get("embedding")) if isinstance(row, dict) else None
            if not isinstance(index, int) or vector is None or index in by_index:
                raise self.server.garbage("a `data` entry without a distinct index and a finite, non-zero embedding")
            by_index[index] = vector
        if sorted(by_index) != list(range(count)):
            raise self.server.garbage(
                f"{len(by_index)} embeddings (indices {sorted(by_index)[:5]}...) for {count} texts"
            )
        dimensions = {len(vector) for vector in by_index.values()}
        if self.dimension and dimensions != {self.dimension}:
            raise self.server.garbage(
                f"dimension {sorted(dimensions)}, the model {self.model_name} had {self.dimension}"
            )
        return [by_index[i] for i in range(count)]


def _unit_vector(raw: object) -> list[float] | None:
    """`raw` scaled to length 1, or None when it is not a non-empty list of finite numbers with a length."""
    if not isinstance(raw, list) or not raw:
        return None
    numbers = [finite_float(value) for value in raw]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]
    norm = math.sqrt(sum(value * value for value in values))
    if norm == 0.0 or not math.isfinite(norm):
        return None
    return [value / norm for value in values]
