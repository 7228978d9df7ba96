"""Rerankers of a remote server's `/rerank` (RERANK_BACKEND=cohere | tei).

Two request/answer shapes exist in the wild:

- cohere: `{model, query, documents, top_n}` -> `{"results": [{"index", "relevance_score"}]}`, the one
  Cohere, Jina, Infinity and vLLM share (vLLM serves Qwen3-Reranker-0.6B through it);
- tei: `{query, texts}` -> `[{"index", "score"}]`, Hugging Face's text-embeddings-inference.

The worker hands over (query, document) pairs that may belong to several searches, so pairs are
grouped by query and sent RERANK_BATCH_SIZE documents at a time (halved on a 413). An answer must
hold exactly one finite score per document, by index; anything else fails the batch, and the search
keeps its fused order (rerank_skipped "error").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ragserver.ml.remote_embedder import estimate_tokens
from ragserver.ml.remote_http import RemoteServer, finite_float, in_batches

# (query, documents, model) -> request body; answer -> the (index, score) rows in it, or None if misshapen
RequestBody = Callable[[str, list[str], str], dict[str, Any]]
AnswerRows = Callable[[object], list[object] | None]


def _cohere_body(query: str, documents: list[str], model: str) -> dict[str, Any]:
    return {"model": model, "query": query, "documents": documents, "top_n": len(documents), "return_documents": False}


def _cohere_rows(answer: object) -> list[object] | None:
    rows = answer.get("results") if isinstance(answer, dict) else None
    return rows if isinstance(rows, list) else None


def _tei_body(query: str, documents: list[str], model: str) -> dict[str, Any]:
    return {"query": query, "texts": documents, "truncate": True}


def _tei_rows(answer: object) -> list[object] | None:
    return answer if isinstance(answer, list) else None


# backend -> (request body, rows of the answer, the key of a row's score)
SHAPES: dict[str, tuple[RequestBody, AnswerRows, str]] = {
    "cohere": (_cohere_body, _cohere_rows, "relevance_score"),
    "tei": (_tei_body, _tei_rows, "score"),
}


class RemoteReranker:
    """Implements ml.contracts.Reranker over HTTP in one of SHAPES."""

    def __init__(self, server: RemoteServer, model_name: str, backend: str, *, batch_size: int) -> None:
        self.server = server
        self.model_name = model_name
        self.kind = f"remote-{backend}"
        self.batch_size = batch_size
        self._body, self._rows, self._score_key = SHAPES[backend]

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        return [estimate_tokens(query) + estimate_tokens(document) for query, document in pairs]

    def score(self, pairs: list[tuple[str, str]], *, quick: bool = False) -> list[float]:
        """Relevance of each pair in input order, one request series per distinct query; `quick` for a
        search waiting on it (RemoteServer.post)."""
        positions: dict[str, list[int]] = {}
        for position, (query, _) in enumerate(pairs):
            positions.setdefault(query, []).append(position)
        scores = [0.0] * len(pairs)
        for query, where in positions.items():
            documents = [pairs[position][1] for position in where]
            found = in_batches(partial(self._request, query, quick=quick), documents, self.batch_size)
            for position, value in zip(where, found, strict=True):
                scores[position] = value
        return scores

    def _request(self, query: str, documents: list[str], *, quick: bool = False) -> list[float]:
        answer = self.server.post("rerank", self._body(query, documents, self.model_name), quick=quick)
        rows = self._rows(answer)
        if rows is None:
            raise self.server.garbage(f"not the {self.kind.removeprefix('remote-')} /rerank shape")
        by_index: dict[int, float] = {}
        for row in rows:
            index = row.get("index") if isinstance(row, dict) else None
            value = finite_float(row.get(self._score_key)) if isinstance(row, dict) else None
            if not isinstance(index, int) or value is None or index in by_index:
                raise self.server.garbage(f"a result without a distinct index and a finite {self._score_key}")
            by_index[index] = value
        if sorted(by_index) != list(range(len(documents))):
            raise self.server.garbage(f"{len(by_index)} scores for {len(documents)} documents")
        return [by_index[i] for i in range(len(documents))]
