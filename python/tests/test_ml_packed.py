"""Packed attention: one row holding several prompts must equal causal attention over each prompt alone."""

from __future__ import annotations

import torch
from torch.nn.functional import scaled_dot_product_attention

from ragserver.ml.packed import packed_attention


def causal(query, key, value, scale):
    """Reference: plain causal SDPA of one whole prompt, grouped-query heads expanded."""
    key, value = key.repeat_interleave(2, dim=1), value.repeat_interleave(2, dim=1)
    return scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale).transpose(1, 2)


def test_packed_attention_equals_causal_attention_per_prompt() -> None:
    torch.manual_seed(0)
    segments = [(0, 0, 0, 5), (5, 5, 5, 12), (12, 12, 12, 13)]
    query = torch.randn(1, 4, 13, 8)  # 4 query heads sharing 2 kv heads (grouped-query attention)
    key, value = torch.randn(1, 2, 13, 8), torch.randn(1, 2, 13, 8)
    output, weights = packed_attention(None, query, key, value, None, scaling=0.3, packed_segments=segments)
    assert output.shape == (1, 13, 4, 8) and weights is None
    for _, _, start, end in segments:
        expected = causal(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], 0.3)
        assert torch.allclose(output[:, start:end], expected, atol=1e-6)


def test_a_shared_head_is_seen_by_every_tail_as_its_own_prompt_start() -> None:
    """Row = head (4 tokens) + tail A (3) + tail B (2): A's queries must see head + A, never B."""
    torch.manual_seed(1)
    segments = [(0, 0, 0, 4), (0, 4, 4, 7), (0, 4, 7, 9)]
    query, key, value = torch.randn(1, 4, 9, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    output, _ = packed_attention(None, query, key, value, None, scaling=0.5, packed_segments=segments)
    for start, end in ((4, 7), (7, 9)):
        prompt = [*range(0, 4), *range(start, end)]  # the tail's whole prompt, as if it ran alone
        expected = causal(query[:, :, prompt], key[:, :, prompt], value[:, :, prompt], 0.5)
        assert torch.allclose(output[:, start:end], expected[:, 4:], atol=1e-6)
    assert torch.allclose(output[:, 0:4], causal(query[:, :, :4], key[:, :, :4], value[:, :, :4], 0.5), atol=1e-6)
