"""Models only (no SQL, no FastAPI); torch and friends are imported lazily, inside functions.

service.py   MLService: probe at start, load once, serve embed/rerank through the workers
probe.py     is the external ML env ready | missing | incompatible | broken, and the fix
manifest.py  ml-env.json: the format the bootstrap writes, a tolerant reader, a writer CLI
loading.py   offline model resolution (local folder or HF cache), device and dtype
embedder.py  SentenceTransformer embedder (contracts.Embedder)
reranker.py  Qwen3-Reranker (causal LM, P(yes)) and classic cross-encoders (contracts.Reranker)
worker.py    one batching worker per model: bounded queue, length-sorted token-budgeted batches
check.py     `ragserver check-ml`: probe, load, embed and score once
"""

from ragserver.ml.contracts import Embedder, Reranker
from ragserver.ml.service import MLService, MLStatus

__all__ = ["Embedder", "MLService", "MLStatus", "Reranker"]
