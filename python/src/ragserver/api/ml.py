"""Direct access to the models: embeddings and reranking (503 while the ML env is not ready)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ragserver.api.deps import MLDep
from ragserver.api.handlers import error_responses

router = APIRouter(prefix="/api/ml", tags=["ml"], responses=error_responses(429))

MAX_ITEMS = 256
MAX_TEXT_CHARS = 20_000
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class EmbedRequest(BaseModel):
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_ITEMS)]


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    model: str
    dimension: int


class RerankRequest(BaseModel):
    query: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    documents: Annotated[list[Text], Field(min_length=1, max_length=MAX_ITEMS)]
    top_n: Annotated[int | None, Field(ge=1, le=MAX_ITEMS)] = None


class RerankResult(BaseModel):
    index: int
    score: float
    document: str


class RerankResponse(BaseModel):
    results: list[RerankResult]
    model: str


@router.post("/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest, ml: MLDep) -> EmbedResponse:
    """Unit-length embeddings of the texts, in input order."""
    vectors = await ml.embed(body.texts)
    return EmbedResponse(embeddings=vectors, model=ml.embedding_model, dimension=len(vectors[0]))


@router.post("/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, ml: MLDep) -> RerankResponse:
    """Documents ordered by relevance to the query (scores in [0, 1]), best first."""
    scores = await ml.rerank(body.query, body.documents)
    ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[: body.top_n]
    results = [RerankResult(index=i, score=scores[i], document=body.documents[i]) for i in ranked]
    return RerankResponse(results=results, model=ml.reranker_model)
