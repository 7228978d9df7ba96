"""Models only (no SQL, no FastAPI), local or on a remote inference server; torch and friends are imported
lazily, inside functions.

service.py   MLService: probe at start, load once, serve embed/rerank through the workers
probe.py     is the external ML env ready | missing | incompatible | broken, and the fix
manifest.py  ml-env.json: the format the bootstrap writes, a tolerant reader, a writer CLI
loading.py   offline model resolution (local folder or HF cache), device and dtype
embedder.py  SentenceTransformer embedder (contracts.Embedder)
reranker.py  Qwen3-Reranker (causal LM, P(yes)) and classic cross-encoders (contracts.Reranker)
worker.py    one batching worker per model: bounded queue, length-sorted token-budgeted batches
check.py     `ragserver check-ml`: probe, load, embed and score once
remote_backends.py  which models are remote (EMBEDDING_BACKEND, RERANK_BACKEND); the env is then not needed
remote_http.py      one remote model server: pooled HTTP, retries with backoff, errors translated, last failure
remote_embedder.py  OpenAI-compatible /v1/embeddings (contracts.Embedder), the dimension probed at start
remote_reranker.py  Cohere-shaped and TEI-shaped /rerank (contracts.Reranker)
"""

from ragserver.ml.contracts import Embedder, Reranker
from ragserver.ml.service import MLService, MLStatus

__all__ = ["Embedder", "MLService", "MLStatus", "Reranker"]
