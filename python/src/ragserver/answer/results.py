"""What an ask answers, as typed models: the whole JSON answer and the events of a streamed one.

A streamed answer is the same answer in pieces: `references` (with the search stages) first, `delta`
events with the answer's text, then `done` with everything the whole answer has besides (citations,
model, latency), or `error` when the LLM fails in the middle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ragserver.search.results import RerankSkipped, SearchMode

# Why an answer says the knowledge base has nothing: the search found no chunk, none scored
# ASK_MIN_RERANK_SCORE (both without asking the LLM), or the LLM found the chunks do not answer it.
NoAnswerReason = Literal["nothing_found", "nothing_relevant", "not_in_sources"]


class Reference(BaseModel):
    """A retrieved chunk as the prompt numbered it: the answer cites it as [number]."""

    number: int = Field(description="The n of [n] in the answer")
    chunk_id: int
    page_id: int
    source_id: str
    url: str
    title: str
    heading_path: list[str]
    content: str = Field(description="The chunk's text, as the LLM was given it")
    rerank_score: float | None = Field(default=None, description="Reranker relevance in [0, 1]; null: not reranked")
    cited: bool = Field(default=False, description="Whether the answer cites it")


class SearchStages(BaseModel):
    """How the chunks were found: the stages of the search /api/rag/query runs."""

    search_mode: SearchMode
    reranking_applied: bool
    rerank_skipped: RerankSkipped | None = None
    embedding_model: str | None
    reranker_model: str | None
    total_found: int = Field(description="Chunks the search returned")
    relevant: int = Field(description="Of them, those at or above ASK_MIN_RERANK_SCORE (all when not reranked)")
    used: int = Field(description="Of those, the ones the prompt carries (ASK_MAX_CONTEXT_CHARS)")


class Latency(BaseModel):
    """Where the time of an ask went, in ms."""

    search_ms: float
    llm_ms: float = Field(description="Until the LLM's last piece; 0 when it was not asked")
    total_ms: float


class AskDone(BaseModel):
    """The end of an answer: citations and what the LLM says of its answer (the `done` event)."""

    answered: bool = Field(description="False when the knowledge base had nothing to answer with")
    no_answer_reason: NoAnswerReason | None = None
    cited: list[int] = Field(description="Reference numbers the answer cites, in order of first citation")
    model: str | None = Field(description="The LLM's model as it named itself; null when it was not asked")
    finish_reason: str | None = Field(default=None, description="The LLM's: 'stop', or 'length' when cut short")
    usage: dict[str, int] = Field(default_factory=dict, description="Token counts, when the LLM reports them")
    latency: Latency


class AskResponse(AskDone):
    """The whole answer: its text, the numbered references it may cite, and how they were found."""

    success: bool = True
    question: str
    answer: str
    references: list[Reference]
    search: SearchStages


class ReferencesEvent(BaseModel):
    """The first event of a stream: what the answer may cite and how it was found."""

    question: str
    references: list[Reference]
    search: SearchStages


class DeltaEvent(BaseModel):
    """A piece of the answer's text."""

    text: str


class ErrorEvent(BaseModel):
    """The LLM failed after the stream began: the last event, in place of `done`."""

    success: bool = False
    error: str
    message: str


AskEvent = ReferencesEvent | DeltaEvent | AskDone | ErrorEvent
EVENT_NAMES: dict[type[BaseModel], str] = {
    ReferencesEvent: "references",
    DeltaEvent: "delta",
    AskDone: "done",
    ErrorEvent: "error",
}
