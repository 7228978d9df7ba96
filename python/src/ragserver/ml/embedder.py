"""The embedder: a SentenceTransformer loaded once from a local folder, normalized output.

Blocking; ml.worker calls `embed` from its inference thread, never on the event loop.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from ragserver.ml.loading import Placement, force_offline


class SentenceTransformerEmbedder:
    """Implements ml.contracts.Embedder with sentence-transformers."""

    def __init__(self, model_name: str, path: Path, placement: Placement) -> None:
        force_offline()
        from sentence_transformers import SentenceTransformer

        model_kwargs = {} if placement.dtype == "float32" else {"dtype": placement.torch_dtype()}
        self._model = SentenceTransformer(
            str(path), device=placement.device, local_files_only=True, model_kwargs=model_kwargs
        )
        self._model.eval()
        self.model_name = model_name
        self.placement = placement
        # get_embedding_dimension is the sentence-transformers >= 6 name of the older method.
        model = self._model
        get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = get_dimension()
        if not dimension:
            raise ValueError(f"{model_name}: the model does not report an embedding dimension")
        self.dimension = int(dimension)
        self.max_seq_length = int(self._model.max_seq_length or 512)
        # A fast tokenizer is not safe to call from two threads at once (it mutates its
        # truncation state), and count_tokens runs on the loop and in chunking threads while
        # the worker thread encodes: counting gets its own copy behind a lock.
        self._count_tokenizer = copy.deepcopy(self._model.tokenizer)
        self._count_lock = threading.Lock()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Full token counts (special tokens included, no truncation) so chunks can be sized to fit."""
        with self._count_lock:
            return _token_counts(self._count_tokenizer, texts)

    def measure(self, texts: list[str]) -> list[int]:
        """count_tokens for the ML worker, which sizes its batches with it: with the model's own
        tokenizer, which only the worker's threads use, one round at a time, so a search never
        waits for the lock that low-priority chunking threads hold."""
        return _token_counts(self._model.tokenizer, texts)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One forward pass over `texts` (the worker already sized the batch); unit-length vectors."""
        import torch

        with torch.inference_mode():
            vectors = self._model.encode(
                texts,
                batch_size=max(1, len(texts)),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.astype("float32").tolist()
        return rows


def _token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]
