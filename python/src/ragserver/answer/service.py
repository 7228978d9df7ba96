"""Answers grounded in the knowledge base: retrieve as /api/rag/query does, ask the LLM over the chunks found,
map the [n] citations of its answer back to those chunks.

It never lets the model invent an answer the knowledge base lacks, in two ways. When retrieval finds
nothing, or nothing the reranker scores at ASK_MIN_RERANK_SCORE or above, the LLM is not asked at all
and the answer says so. Otherwise the prompt instructs the model to reply NOT_IN_SOURCES when the chunks
do not hold the answer; that reply is detected (answer.refusal) and replaced with the same kind of
sentence, with `answered: false` and the reason. Without reranking (off, or degraded) every chunk found
counts as relevant, so the model's NOT_IN_SOURCES is then the only guard.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ragserver.answer.citations import cited_numbers
from ragserver.answer.llm import ChatClient, ChatStream, Completion, llm_configured
from ragserver.answer.prompt import build_messages
from ragserver.answer.refusal import RefusalGate, is_refusal
from ragserver.answer.results import (
    AskDone,
    AskEvent,
    AskResponse,
    DeltaEvent,
    ErrorEvent,
    Latency,
    NoAnswerReason,
    Reference,
    ReferencesEvent,
    SearchStages,
)
from ragserver.answer.thinking import ThinkingFilter, without_thinking
from ragserver.config import Settings
from ragserver.errors import ConfigError, LLMError, NotConfigured
from ragserver.search.results import ChunkResult, QueryResponse
from ragserver.search.service import SearchService

NO_ANSWER: dict[NoAnswerReason, str] = {
    "nothing_found": "The knowledge base has nothing on this question: the search found no matching passage.",
    "nothing_relevant": "The knowledge base has nothing relevant to this question: no passage found is about it.",
    "not_in_sources": "The knowledge base does not answer this question: the passages found do not contain it.",
}
# What a search answer and a chunk hand on unchanged to the ask's stages and references.
STAGE_FIELDS = set(SearchStages.model_fields) & set(QueryResponse.model_fields)
REFERENCE_FIELDS = set(Reference.model_fields) & set(ChunkResult.model_fields) - {"content"}
NOT_CONFIGURED = (
    "answering needs an LLM: set LLM_URL (an OpenAI-compatible base URL with /v1, e.g. http://localhost:11434/v1 "
    "for Ollama) and LLM_MODEL (the model it serves)"
)


def chat_client(settings: Settings) -> ChatClient | None:
    """The chat client the settings describe (None: asking is off), once every ASK_* setting is checked."""
    if settings.ask_max_context_chars < 1:
        raise ConfigError("ASK_MAX_CONTEXT_CHARS must be at least 1")
    if not 0 <= settings.ask_min_rerank_score <= 1:
        raise ConfigError("ASK_MIN_RERANK_SCORE must be between 0 and 1 (reranker scores are)")
    return ChatClient.from_settings(settings)


def require_llm(settings: Settings) -> None:
    """NotConfigured (409) naming the settings, when no LLM is configured: a caller checks before slow work."""
    if not llm_configured(settings):
        raise NotConfigured(NOT_CONFIGURED)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


@dataclass(frozen=True)
class Question:
    """What to ask, and which chunks to ground it on: the filters of /api/rag/query, and
    `min_rerank_score` in place of ASK_MIN_RERANK_SCORE (None: the setting)."""

    text: str
    source_id: str | None = None
    match_count: int = 5
    library: str | None = None
    version: str | None = None
    min_rerank_score: float | None = None


@dataclass
class Grounding:
    """What an answer stands on: the search's answer and the references made from it."""

    question: str
    found: QueryResponse
    relevant: int
    references: list[Reference]
    started: float
    search_ms: float

    @property
    def no_answer_reason(self) -> NoAnswerReason | None:
        """Why the LLM is not asked, or None when it is."""
        if self.references:
            return None
        return "nothing_relevant" if self.found.results else "nothing_found"

    def stages(self) -> SearchStages:
        stages = self.found.model_dump(include=STAGE_FIELDS)
        return SearchStages(**stages, relevant=self.relevant, used=len(self.references))

    def done(self, answer: str, completion: Completion | None, llm_ms: float) -> AskDone:
        """The end of the answer `answer` (as the LLM gave it), its citations marked on the references."""
        reason = self.no_answer_reason
        if reason is None and is_refusal(answer):
            reason = "not_in_sources"
        cited = [] if reason else cited_numbers(answer, len(self.references))
        for reference in self.references:
            reference.cited = reference.number in cited
        return AskDone(
            answered=reason is None,
            no_answer_reason=reason,
            cited=cited,
            model=completion.model if completion else None,
            finish_reason=completion.finish_reason if completion else None,
            usage=completion.usage if completion else {},
            latency=Latency(search_ms=self.search_ms, llm_ms=llm_ms, total_ms=_ms(self.started)),
        )


class AnswerService:
    """Asks the configured LLM about what the search finds; `chat` None means no LLM is configured (409)."""

    def __init__(self, search: SearchService, chat: ChatClient | None, settings: Settings) -> None:
        self.search = search
        self.chat = chat
        self.settings = settings

    async def ask(self, question: Question) -> AskResponse:
        """The whole answer."""
        chat = self._chat()
        grounding = await self._ground(question)
        completion: Completion | None = None
        llm_ms = 0.0
        if grounding.references:
            asked = time.perf_counter()
            completion = await chat.complete(build_messages(grounding.question, grounding.references))
            llm_ms = _ms(asked)
        answer = without_thinking(completion.text) if completion else ""
        done = grounding.done(answer, completion, llm_ms)
        return AskResponse(
            **done.model_dump(),
            question=grounding.question,
            answer=NO_ANSWER[done.no_answer_reason] if done.no_answer_reason else answer,
            references=grounding.references,
            search=grounding.stages(),
        )

    async def open_stream(self, question: Question) -> AnswerStream:
        """A streamed answer, retrieval done and the LLM's stream open: failures until then raise (409/502/504)."""
        chat = self._chat()
        grounding = await self._ground(question)
        if not grounding.references:
            return AnswerStream(grounding, None)
        messages = build_messages(grounding.question, grounding.references)
        return AnswerStream(grounding, await chat.open_stream(messages))

    def _chat(self) -> ChatClient:
        if self.chat is None:
            raise NotConfigured(NOT_CONFIGURED)
        return self.chat

    async def _ground(self, question: Question) -> Grounding:
        started = time.perf_counter()
        found = await self.search.query(
            question.text,
            source_id=question.source_id,
            match_count=question.match_count,
            library=question.library,
            version=question.version,
        )
        floor = self.settings.ask_min_rerank_score if question.min_rerank_score is None else question.min_rerank_score
        chunks = [result for result in found.results if isinstance(result, ChunkResult)]
        relevant = [chunk for chunk in chunks if not found.reranking_applied or _scores_at_least(chunk, floor)]
        return Grounding(
            question=found.query,
            found=found,
            relevant=len(relevant),
            references=number_references(relevant, self.settings.ask_max_context_chars),
            started=started,
            search_ms=_ms(started),
        )


def number_references(chunks: list[ChunkResult], max_chars: int) -> list[Reference]:
    """The chunks numbered from 1, best first, as long as their text fits `max_chars` (the one that does
    not fit is cut to the room left, and is the last)."""
    references: list[Reference] = []
    room = max_chars
    for chunk in chunks:
        if room <= 0:
            break
        content = chunk.content[:room]
        room -= len(chunk.content)
        where = chunk.model_dump(include=REFERENCE_FIELDS)
        references.append(Reference(**where, number=len(references) + 1, chunk_id=chunk.id, content=content))
    return references


def _scores_at_least(chunk: ChunkResult, floor: float) -> bool:
    """A reranked chunk scoring `floor` or more; one the rerank budget left unscored is kept."""
    return chunk.rerank_score is None or chunk.rerank_score >= floor


class AnswerStream:
    """The events of one streamed answer: references, the answer's pieces, then done (or error)."""

    def __init__(self, grounding: Grounding, chat: ChatStream | None) -> None:
        self.grounding = grounding
        self._chat = chat

    async def events(self) -> AsyncIterator[AskEvent]:
        grounding = self.grounding
        yield ReferencesEvent(question=grounding.question, references=grounding.references, search=grounding.stages())
        if self._chat is None:
            done = grounding.done("", None, 0.0)
            yield DeltaEvent(text=NO_ANSWER[done.no_answer_reason or "nothing_found"])
            yield done
            return
        asked = time.perf_counter()
        thinking, gate = ThinkingFilter(), RefusalGate()
        answer = ""  # what the model answered, its thinking left out
        try:
            async for piece in self._chat.pieces():
                visible = thinking.feed(piece)
                answer += visible
                if shown := gate.feed(visible):
                    yield DeltaEvent(text=shown)
            answer += (rest := thinking.finish())
            if shown := gate.feed(rest) + gate.finish():
                yield DeltaEvent(text=shown)
        except LLMError as exc:
            yield ErrorEvent(error=exc.code, message=exc.message)
            return
        finally:
            await self.aclose()
        completion = self._chat.completion
        done = grounding.done(answer, completion, _ms(asked))
        if done.no_answer_reason:
            yield DeltaEvent(text=NO_ANSWER[done.no_answer_reason])
        yield done

    async def aclose(self) -> None:
        """Let go of the LLM's response (also when the caller stops reading early)."""
        if self._chat is not None:
            await self._chat.aclose()
