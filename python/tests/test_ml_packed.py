"""Packed attention: one row holding several prompts must equal causal attention over each prompt alone."""

from __future__ import annotations

import torch
from torch.nn.functional import scaled_dot_product_attention

from ragserver.ml.packed import packed_attention


def test_packed_attention_equals_causal_attention_per_prompt() -> None:
    torch.manual_seed(0)
    segments = [(0, 5), (5, 12), (12, 13)]
    query = torch.randn(1, 4, 13, 8)  # 4 query heads sharing 2 kv heads (grouped-query attention)
    key, value = torch.randn(1, 2, 13, 8), torch.randn(1, 2, 13, 8)
    output, weights = packed_attention(None, query, key, value, None, scaling=0.3, packed_segments=segments)
    assert output.shape == (1, 13, 4, 8) and weights is None
    for start, end in segments:
        expected = scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end].repeat_interleave(2, dim=1),
            value[:, :, start:end].repeat_interleave(2, dim=1),
            is_causal=True,
            scale=0.3,
        )
        assert torch.allclose(output[:, start:end], expected.transpose(1, 2), atol=1e-6)
