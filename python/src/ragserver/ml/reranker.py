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

import copy
import json
import threading
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
        # A fast tokenizer must not run in two threads at once (searches count their candidates'
        # tokens while the worker thread scores), so every use of it takes this lock.
        self._tokenizer_lock = threading.Lock()
        self._model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=placement.torch_dtype(), local_files_only=True, attn_implementation=packed.register()
        ).to(placement.device)  # type: ignore[arg-type]  # @wraps(Module.to) hides the bound method from mypy
        self._model.eval()
        self._prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
        self._suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self._body_max = max_length - len(self._prefix) - len(self._suffix)
        self._yes = tokenizer.convert_tokens_to_ids("yes")
        self._no = tokenizer.convert_tokens_to_ids("no")
        unknown = tokenizer.unk_token_id
        if self._yes in (None, unknown) or self._no in (None, unknown):
            raise ValueError(f"{model_name}: tokenizer has no single 'yes'/'no' tokens; not a Qwen3 reranker")

    def _parts(self, pairs: list[tuple[str, str]]) -> tuple[dict[str, list[int]], list[list[int]]]:
        """Each query's shared head (prompt up to '<Document>:') and each pair's own tail (document + suffix).

        The body is cut at a pre-tokenizer boundary (': ' + document: the space starts the
        document's first word), so head + tail are exactly the ids of the whole prompt. The
        document is truncated so the body fits MAX_LENGTH with prefix and suffix intact.
        """
        tokenizer = self._tokenizer
        heads: dict[str, list[int]] = {}
        with self._tokenizer_lock:
            for query in dict.fromkeys(q for q, _ in pairs):
                head_text = format_body(query, "", self.instruction).removesuffix(" ")
                heads[query] = self._prefix + tokenizer.encode(head_text, add_special_tokens=False)
            documents = tokenizer([" " + d for _, d in pairs], add_special_tokens=False)["input_ids"]
        tails = []
        for (query, _), ids in zip(pairs, documents, strict=True):
            room = max(0, self._body_max - (len(heads[query]) - len(self._prefix)))
            tails.append(ids[:room] + self._suffix)
        return heads, tails

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Prompt length of each pair after truncation (what the pair costs scored alone); thread-safe."""
        heads, tails = self._parts(pairs)
        return [len(heads[q]) + len(tail) for (q, _), tail in zip(pairs, tails, strict=True)]

    def shared_lengths(self, pairs: list[tuple[str, str]]) -> list[tuple[int, int]]:
        """(head length shared by the pairs of its query, own tail length) of each pair: the cost model of `score`."""
        heads, tails = self._parts(pairs)
        return [(len(heads[q]), len(tail)) for (q, _), tail in zip(pairs, tails, strict=True)]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """P(yes) for each pair, in input order, from one forward pass over the packed prompts.

        One row holds, per distinct query, its prompt head once followed by the tails of its
        pairs (ml.packed): a tail attends to its head and causally to itself, so each pair's
        last position sees exactly its own full prompt, while the head's tokens (system prompt,
        instruction and query, a sizeable part of every pair) are computed once per batch instead
        of once per pair. No padding, no KV cache, and only each tail's last logits are computed.
        """
        import torch

        heads, tails = self._parts(pairs)
        row: list[int] = []
        positions: list[int] = []
        segments: list[tuple[int, int, int, int]] = []
        last = [0] * len(pairs)
        for query, head in heads.items():
            head_start = len(row)
            row += head
            positions += range(len(head))
            segments.append((head_start, head_start, head_start, len(row)))
            head_end = len(row)
            for index, (pair_query, _) in enumerate(pairs):
                if pair_query != query:
                    continue
                start = len(row)
                row += tails[index]
                positions += range(len(head), len(head) + len(tails[index]))
                segments.append((head_start, head_end, start, len(row)))
                last[index] = len(row) - 1
        device = self.placement.device
        with torch.inference_mode():
            logits = self._model(
                input_ids=torch.tensor([row], device=device),
                position_ids=torch.tensor([positions], device=device),
                logits_to_keep=torch.tensor(last, device=device),
                use_cache=False,
                packed_segments=segments,
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
        # predict() holds the model's tokenizer in the worker thread for a whole forward pass;
        # counting (searches size their budgeted batches with it) uses its own copy behind a lock.
        self._count_tokenizer = copy.deepcopy(self._model.tokenizer)
        self._count_lock = threading.Lock()

    def count_tokens(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Joint (query, document) token count, capped at the model's max length; thread-safe."""
        limit = self._model.max_seq_length or 512
        queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
        with self._count_lock:
            encoded = self._count_tokenizer(queries, documents, truncation=True, max_length=limit)
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
