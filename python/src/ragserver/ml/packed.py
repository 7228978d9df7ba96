"""Packed causal attention: several prompts in one row of a batch, with no padding at all.

A reranker batch holds prompts of different lengths. Left-padding them to the longest makes
every linear layer and the attention also compute the padding (a third of the work for search
candidates of varied lengths), and a padding mask keeps SDPA off its causal fast path. Packed,
the prompts are concatenated into one row: the linear layers see exactly the real tokens as
one tall matrix (the GEMM shape CPUs run fastest), positions restart at 0 for each prompt, and
attention runs per prompt with `is_causal=True`, so no prompt sees another.

This plugs into transformers' attention and mask registries under its own name, used only by
the models we load with it: the attention function gets the prompts' (start, end) offsets as
the `packed_segments` keyword of the model's forward, and the mask function builds no mask
(the attention needs none).
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
    packed_segments: list[tuple[int, int]] | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Causal SDPA over each (start, end) prompt of a single packed row.

    query: (1, heads, tokens, head_dim); key/value: (1, kv_heads, tokens, head_dim). Returns
    (1, tokens, heads, head_dim) like transformers' own attention functions.
    """
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    if query.shape[0] != 1:
        raise ValueError("packed attention takes one packed row per batch")
    tokens = query.shape[2]
    segments = packed_segments or [(0, tokens)]
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: every query head reads its kv head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    output = torch.empty(1, tokens, query.shape[1], value.shape[-1], dtype=query.dtype, device=query.device)
    for start, end in segments:
        part = scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], is_causal=True, scale=scaling
        )
        output[:, start:end] = part.transpose(1, 2)
    return output, None
