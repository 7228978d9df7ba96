"""The rerank time budget (RERANK_BUDGET_MS): how many fused candidates a search reranks in time.

Qwen3-Reranker-0.6B on a CPU needs seconds per candidate, so reranking all of a search's
candidates takes longer than an assistant's tool call should wait: a search reranks them in
fused order, batch by batch, and stops when the budget is spent. Before each batch the pace
(seconds per reranker token, an exponentially weighted average over the batches run so far, kept
across searches) predicts its cost, and a batch predicted to overshoot what is left of the
budget is not started: a search lands within one batch of its budget. A batch of several
candidates takes at most half of what is left, so batches shrink as the budget runs out and the
last ones (where a machine that slowed down since the pace was measured makes a search
overshoot) are small. Until a first batch has been timed there is no pace, so the first search
after start reranks one candidate to take it. The budget covers reranking only (counting the
candidates' tokens included); embedding and retrieval come on top of it.

The defaults (RERANK_BUDGET_MS=0, auto) and how close searches land are in BENCHMARKS.md,
"Rerank time budget".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ragserver.clock import Clock
from ragserver.errors import InputError

AUTO_BUDGET = 0  # RERANK_BUDGET_MS=0: the default of the device the reranker runs on
NO_BUDGET = -1  # RERANK_BUDGET_MS=-1: rerank every candidate, however long it takes
MAX_BUDGET_MS = 600_000  # ten minutes: a longer budget is a mistake, not a wish
# The auto budgets, chosen in BENCHMARKS.md ("Rerank time budget"). The CUDA one is not measured
# there (no GPU); it is scaled from the CPU figures, see that section.
CPU_BUDGET_MS = 10_000
CUDA_BUDGET_MS = 2_000
PACE_WEIGHT = 0.5  # weight of the newest batch in the pace: follows load changes within a few batches
BATCH_SHARE = 0.5  # of the time left, what a batch of several candidates may take (a single one: all)


class BudgetModels(Protocol):
    """What a budgeted rerank uses of the ML service."""

    @property
    def batch_tokens(self) -> int: ...

    async def rerank_tokens(self, query: str, documents: list[str]) -> list[int]: ...

    async def rerank(self, query: str, documents: list[str]) -> list[float]: ...


def check_budget_ms(budget_ms: int) -> int:
    """A RERANK_BUDGET_MS-style value (-1, 0 or ms), or InputError naming what is allowed."""
    if budget_ms < NO_BUDGET or budget_ms > MAX_BUDGET_MS:
        raise InputError(
            f"rerank_budget_ms must be -1 (no budget), 0 (auto) or a number of ms up to {MAX_BUDGET_MS},"
            f" got {budget_ms}"
        )
    return budget_ms


def resolve_budget_ms(budget_ms: int, device: str | None) -> int | None:
    """The budget in ms a search applies (None: none) for a RERANK_BUDGET_MS-style value on `device`."""
    if check_budget_ms(budget_ms) == NO_BUDGET:
        return None
    if budget_ms == AUTO_BUDGET:
        return CUDA_BUDGET_MS if device == "cuda" else CPU_BUDGET_MS
    return budget_ms


class RerankPace:
    """Seconds per reranker token, averaged over the batches timed so far (None before the first)."""

    def __init__(self) -> None:
        self.seconds_per_token: float | None = None

    def observe(self, tokens: int, seconds: float) -> None:
        """Fold one timed batch into the average."""
        if tokens <= 0:
            return
        measured = max(0.0, seconds) / tokens
        previous = self.seconds_per_token
        self.seconds_per_token = measured if previous is None else PACE_WEIGHT * measured + (1 - PACE_WEIGHT) * previous

    def batch_size(self, lengths: Sequence[int], remaining_s: float, max_batch_tokens: int) -> int:
        """How many of the next candidates (token counts in fused order) to rerank now; 0 = stop.

        As many as the pace predicts to fit in BATCH_SHARE of `remaining_s` (a single candidate:
        in all of it), within one forward pass of the worker (rows x longest row <=
        max_batch_tokens); one to take the pace when there is none.
        """
        if not lengths or remaining_s <= 0:
            return 0
        pace = self.seconds_per_token
        if pace is None:
            return 1
        count = tokens = longest = 0
        for length in lengths:
            longest = max(longest, length)
            if count and (count + 1) * longest > max_batch_tokens:
                break
            if (tokens + length) * pace > (remaining_s * BATCH_SHARE if count else remaining_s):
                break
            count += 1
            tokens += length
        return count


@dataclass
class BudgetedScores:
    """Rerank scores of the first `len(scores)` candidates, the time the reranking took and each
    batch's (benchmarks check that a search lands within one batch of its budget)."""

    scores: list[float]
    elapsed_ms: float
    batch_ms: list[float]


class BudgetedReranker:
    """Reranks candidates in their given order within a time budget, keeping the pace across searches."""

    def __init__(self, ml: BudgetModels, clock: Clock) -> None:
        self.ml = ml
        self.clock = clock
        self.pace = RerankPace()

    async def rerank(self, query: str, documents: list[str], budget_ms: int | None) -> BudgetedScores:
        """Scores of a prefix of `documents`: all of them when `budget_ms` is None (one request,
        batched by the worker), else as many as fit the budget, batch by batch."""
        started = self.clock.now()
        lengths = await self.ml.rerank_tokens(query, documents)
        scores: list[float] = []
        batch_ms: list[float] = []
        while len(scores) < len(documents):
            done = len(scores)
            if budget_ms is None:
                size = len(documents) - done
            else:
                remaining_s = budget_ms / 1000 - (self.clock.now() - started)
                size = self.pace.batch_size(lengths[done:], remaining_s, self.ml.batch_tokens)
                if size == 0:
                    break
            batch_started = self.clock.now()
            scores += await self.ml.rerank(query, documents[done : done + size])
            took = self.clock.now() - batch_started
            self.pace.observe(sum(lengths[done : done + size]), took)
            batch_ms.append(1000 * took)
        return BudgetedScores(scores, elapsed_ms=1000 * (self.clock.now() - started), batch_ms=batch_ms)
