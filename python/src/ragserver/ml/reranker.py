"""Rerankers behind one contract: Qwen3-Reranker (causal LM) and classic cross-encoders.

The implementation is picked from the model's config.json `architectures`:

- `*ForCausalLM` (Qwen3-Reranker): the score is the model card's definition, computed here
  with transformers directly so the prompt is exactly the official one whatever chat template
  the checkpoint ships:

      P(yes) = softmax([logit("no"), logit("yes")])[1]   at the last position

  of `PREFIX + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}" + SUFFIX`,
  the body truncated so prefix and suffix always survive; a batch's prompts run packed into
  one row (ml.packed), so no prompt is padded. (sentence-transformers'
  native causal CrossEncoder computes sigmoid(logit_yes - logit_no), the same number, but it
  formats the pair through the checkpoint's chat template, which for Qwen/Qwen3-Reranker-0.6B
  main is the generic Qwen3 chat template, not this prompt.)
- `*ForSequenceClassification` with one label (e.g. ms-marco-MiniLM): sentence-transformers
  CrossEncoder, sigmoid of the logit.

Blocking; ml.worker runs `score` in its inference thread.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from ragserver.errors import Unavailable
from ragserver.ml import packed
from ragserver.ml.loading import Placement, force_offline

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MAX_LENGTH = 8192  # the model card's max_length for the whole prompt


def format_body(query: str, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The user turn of the official Qwen3-Reranker prompt."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


class CausalLMReranker:
    """Qwen3-Reranker scoring: P(yes) of the next token after the official prompt."""

    kind = "causal-lm-yes-no"

    def __init__(
        self,
        model_name: str,
        path: Path,
        placement: Placement,
        *,
        instruction: str = DEFAULT_INSTRUCTION,
        max_length: int = MAX_LENGTH,
    ) -> None:
        force_offline()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model_name
        self.placement = placement
        self.instruction = instruction
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._tokenizer = tokenizer
        self._model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=placement.torch_dtype(), local_files_only=True, attn_implementation=packed.register()
        ).to(placement.device)
        self._model.eval()
        self._prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
        self._suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self._body_max = max_length - len(self._prefix) - len(self._suffix)
        self._yes = tokenizer.convert_tokens_to_ids("yes")
        self._no = tokenizer.convert_tokens_to_ids("no")
        unknown = tokenizer.unk_token_id
        if self._yes in (None, unknown) or self._no in (None, unknown):
            raise ValueError(f"{model_name}: tokenizer has no single 'yes'/'no' tokens; not a Qwen3 reranker")

    def _prompts(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        bodies = [format_body(q, d, self.instruction) for q, d in pairs]
        encoded = self._tokenizer(bodies, add_special_tokens=False, truncation=True, max_length=self._body_max)
        return [self._prefix + ids + self._suffix for ids in encoded["input_ids"]]

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Prompt length of each pair after truncation (what one row of a batch costs)."""
        return [len(ids) for ids in self._prompts(pairs)]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """P(yes) for each pair, in input order, from one forward pass over the packed prompts.

        The prompts are concatenated into one row (ml.packed: no padding, positions restart per
        prompt, causal attention within each prompt), no KV cache is kept, and only the logits
        of each prompt's last position are computed.
        """
        import torch

        prompts = self._prompts(pairs)
        ends = list(itertools.accumulate(len(ids) for ids in prompts))
        device = self.placement.device
        input_ids = torch.tensor([[token for ids in prompts for token in ids]], device=device)
        positions = torch.tensor([[i for ids in prompts for i in range(len(ids))]], device=device)
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids,
                position_ids=positions,
                logits_to_keep=torch.tensor([end - 1 for end in ends], device=device),
                use_cache=False,
                packed_segments=list(zip([0, *ends[:-1]], ends, strict=True)),
            ).logits[0]
            no_yes = torch.stack([logits[:, self._no], logits[:, self._yes]], dim=1).float()
            return torch.softmax(no_yes, dim=1)[:, 1].cpu().tolist()


class SequenceClassificationReranker:
    """Classic cross-encoder (one relevance logit) through sentence-transformers, sigmoid-activated."""

    kind = "cross-encoder"

    def __init__(self, model_name: str, path: Path, placement: Placement) -> None:
        force_offline()
        import torch
        from sentence_transformers import CrossEncoder

        model_kwargs = {} if placement.dtype == "float32" else {"dtype": placement.torch_dtype()}
        self.model_name = model_name
        self.placement = placement
        self._model = CrossEncoder(
            str(path),
            device=placement.device,
            local_files_only=True,
            model_kwargs=model_kwargs,
            activation_fn=torch.nn.Sigmoid(),
        )
        self._model.eval()
        if self._model.num_labels != 1:
            raise ValueError(f"{model_name}: expected one relevance label, got {self._model.num_labels}")

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Joint (query, document) token count, capped at the model's max length."""
        limit = self._model.max_seq_length or 512
        queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
        encoded = self._model.tokenizer(queries, documents, truncation=True, max_length=limit)
        return [len(ids) for ids in encoded["input_ids"]]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Sigmoid relevance of each pair, in input order, in one batch."""
        import torch

        with torch.inference_mode():
            scores = self._model.predict(
                pairs, batch_size=max(1, len(pairs)), convert_to_numpy=True, show_progress_bar=False
            )
        return [float(s) for s in scores]


def reranker_kind(path: Path) -> str:
    """'causal' or 'sequence-classification', from config.json architectures; Unavailable otherwise."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Unavailable(f"reranker folder {path} has no readable config.json") from exc
    architectures = config.get("architectures") or []
    if any(name.endswith("ForCausalLM") for name in architectures):
        return "causal"
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "sequence-classification"
    raise Unavailable(f"unsupported reranker architecture {architectures!r} in {path}")


def load_reranker(
    model_name: str, path: Path, placement: Placement
) -> CausalLMReranker | SequenceClassificationReranker:
    """Build the reranker that fits the checkpoint at `path`."""
    if reranker_kind(path) == "causal":
        return CausalLMReranker(model_name, path, placement)
    return SequenceClassificationReranker(model_name, path, placement)
