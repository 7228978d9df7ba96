"""The rerank time budget (RERANK_BUDGET_MS) with the full-size Qwen3-Reranker-0.6B shape on this CPU.

    python benchmarks/bench_rerank_budget.py [--data-dir /tmp/ragbench/budget] [--queries 2]
                                             [--top-n 10 20 50] [--budgets-s 2 5 10]

The model is bench_rerank.py's: the Qwen3-Reranker-0.6B architecture with random weights
(tests/support/models.py `full-reranker`; weights do not change the cost), float32 on the CPU.
Candidates are real: the top N chunks the product's hybrid search returns for SciFact test
queries from an ingested SciFact subset (bench_rerank.ensure_subset, chunks as ingest cuts them).

They go through search.budget.BudgetedReranker on the product's MLService, exactly the rerank
stage of SearchService.query, with one pace kept across all calls like a running server:
- cold: the first call after start (no pace yet), top 20 with a 5 s budget;
- unbudgeted: every candidate of the top 10/20/50 (first query only: these are the long calls);
- budgeted: each top N x each budget x --queries queries; per call the candidates reranked, the
  time spent, how far it lands from the budget and the longest batch (a call lands "within one
  batch" when it overshoots by less than its own last batch).
The load average is read before and after: other people's work on a shared machine slows a
batch after the pace predicted it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench_rerank import ensure_subset, full_reranker, search_candidates, test_queries
from harness import product_stack, save_result

from ragserver.clock import LoopClock
from ragserver.search.budget import BudgetedReranker, BudgetedScores


def describe(run: BudgetedScores, budget_ms: int | None, lengths: list[int]) -> dict[str, Any]:
    """One call: candidates reranked, time, overshoot of the budget and whether it is within one batch."""
    row: dict[str, Any] = {
        "reranked": len(run.scores),
        "ms": round(run.elapsed_ms),
        "batches": len(run.batch_ms),
        "longest_batch_ms": round(max(run.batch_ms, default=0.0)),
        "tokens_reranked": sum(lengths[: len(run.scores)]),
    }
    if budget_ms is not None:
        over = run.elapsed_ms - budget_ms
        row["over_budget_ms"] = round(over)
        row["within_one_batch"] = over <= (run.batch_ms[-1] if run.batch_ms else 0.0)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "calls": len(rows),
        "reranked": [row["reranked"] for row in rows],
        "median_ms": round(statistics.median(row["ms"] for row in rows)),
        "max_over_budget_ms": max(row["over_budget_ms"] for row in rows),
        "all_within_one_batch": all(row["within_one_batch"] for row in rows),
        "longest_batch_ms": max(row["longest_batch_ms"] for row in rows),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    qwen_dir = full_reranker(args.data_dir / "models")
    chosen = test_queries()[: args.queries]
    load_before = os.getloadavg()
    overrides = {"reranker_model": str(qwen_dir), "use_reranking": True, "ml_device": "cpu"}
    async with product_stack(args.data_dir, **overrides) as stack:
        if not stack.ml.reranker_ready or stack.ml.reranker is None:
            raise RuntimeError(f"reranker not ready: {stack.ml.status()['reranker']}")
        corpus = await ensure_subset(stack, args.data_dir, chosen)
        top = max(args.top_n)
        workload = [(text, await search_candidates(stack, text, top)) for _, text, _ in chosen]
        reranker = stack.ml.reranker
        lengths = {text: reranker.count_tokens([(text, doc) for doc in docs]) for text, docs in workload}
        budgeted = BudgetedReranker(stack.ml, LoopClock())

        query, documents = workload[0]
        cold = describe(await budgeted.rerank(query, documents[:20], 5000), 5000, lengths[query])
        unbudgeted = {}
        for n in args.top_n:
            unbudgeted[f"top_{n}"] = describe(await budgeted.rerank(query, documents[:n], None), None, lengths[query])
        rows: dict[str, list[dict[str, Any]]] = {}
        for n in args.top_n:
            for budget_s in args.budgets_s:
                budget_ms = int(1000 * budget_s)
                key = f"top_{n}_budget_{budget_s:g}s"
                for text, docs in workload:
                    run_ = await budgeted.rerank(text, docs[:n], budget_ms)
                    rows.setdefault(key, []).append(describe(run_, budget_ms, lengths[text]))
                print(key, rows[key], file=sys.stderr, flush=True)
        pace = budgeted.pace.seconds_per_token
    candidate_tokens = [n for text, _ in workload for n in lengths[text]]
    return {
        "command": "python benchmarks/bench_rerank_budget.py " + " ".join(sys.argv[1:]),
        "reranker": "Qwen3-Reranker-0.6B shape, random weights, float32 on CPU",
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": [round(x, 2) for x in (*load_before, *os.getloadavg())],
        "corpus": corpus,
        "queries": args.queries,
        "candidate_prompt_tokens": {
            "median": statistics.median(candidate_tokens),
            "min": min(candidate_tokens),
            "max": max(candidate_tokens),
        },
        "pace_ms_per_1000_tokens_at_end": round(1e6 * pace, 1) if pace is not None else None,
        "cold_first_call_top_20_budget_5s": cold,
        "unbudgeted": unbudgeted,
        "budgeted": {key: {**summarize(value), "runs": value} for key, value in rows.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragbench/budget"))
    parser.add_argument("--queries", type=int, default=2, help="SciFact test queries per budgeted cell")
    parser.add_argument("--top-n", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--budgets-s", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    save_result("rerank_budget", asyncio.run(run(args)))


if __name__ == "__main__":
    main()
