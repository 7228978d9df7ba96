"""Packed causal attention: several prompts in one row of a batch, with no padding at all.

A reranker batch holds prompts of different lengths. Left-padding them to the longest makes
every linear layer and the attention also compute the padding (a large share of the work for
search candidates of varied lengths: BENCHMARKS.md, "Reranker efficiency"), and a padding mask
keeps SDPA off its causal fast path. Packed, the prompts are concatenated into one row: the
linear layers see exactly the real tokens as one tall matrix (the GEMM shape CPUs run fastest),
and attention runs per prompt, so no prompt sees another. Prompts that start alike (a
reranker's system prompt, instruction and query are the same for every candidate of a search)
can share that head: it sits once in the row, and each prompt's own tail attends to it, with
positions continuing after it, exactly as if the prompt ran alone.

This plugs into transformers' attention and mask registries under its own name, used only by
the models we load with it: the attention function gets the segments as the `packed_segments`
keyword of the model's forward, and the mask function builds no mask (the attention needs none).
"""

from __future__ import annotations

from typing import Any

IMPLEMENTATION = "ragserver_packed"
_registered = False


def register() -> str:
    """Register the packed attention and its (absent) mask with transformers once; the implementation name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(IMPLEMENTATION, packed_attention)
        AttentionMaskInterface.register(IMPLEMENTATION, _no_mask)
        _registered = True
    return IMPLEMENTATION


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """Packed attention applies causality per prompt itself; no dense mask is ever built."""
    return None


def packed_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    *,
    scaling: float | None = None,
    packed_segments: list[tuple[int, int, int, int]] | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """SDPA over the segments of a single packed row.

    Each segment is (context_start, context_end, start, end): the queries of [start, end) see
    every key of the shared context [context_start, context_end) (a prompt head computed once
    for several prompts; empty for a plain prompt) and the keys of [start, end) causally.
    query: (1, heads, tokens, head_dim); key/value: (1, kv_heads, tokens, head_dim). Returns
    (1, tokens, heads, head_dim) like transformers' own attention functions.
    """
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    if query.shape[0] != 1:
        raise ValueError("packed attention takes one packed row per batch")
    if not packed_segments:  # never guess: one causal prompt over the row would let prompts see each other
        raise ValueError("packed attention needs packed_segments from the model's forward call")
    tokens = query.shape[2]
    segments = packed_segments
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: every query head reads its kv head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    output = torch.empty(1, tokens, query.shape[1], value.shape[-1], dtype=query.dtype, device=query.device)
    for context_start, context_end, start, end in segments:
        own = slice(start, end)
        if context_end == context_start:
            part = scaled_dot_product_attention(
                query[:, :, own], key[:, :, own], value[:, :, own], is_causal=True, scale=scaling
            )
        else:  # context + own as one causal prompt (the fast unmasked kernel); keep only own's rows
            context = slice(context_start, context_end)
            q, k, v = (torch.cat([t[:, :, context], t[:, :, own]], dim=2) for t in (query, key, value))
            part = scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)[
                :, :, context_end - context_start :
            ]
        output[:, own] = part.transpose(1, 2)
    return output, None
