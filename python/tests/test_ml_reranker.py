"""Reranker scores against the model card's definition, computed here independently of ml/.

Qwen3-Reranker: P(yes) = softmax([logit("no"), logit("yes")])[1] of the last position of the
official prompt. The reference below writes the prompt out again and runs each pair alone
(no padding) through AutoModelForCausalLM; ragserver scores a batch packed into one row (ml.packed).
Classic cross-encoders: sigmoid of the single logit of AutoModelForSequenceClassification.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.models import install_in_hf_cache
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from ragserver.errors import Unavailable
from ragserver.ml.loading import Placement, resolve_model_path
from ragserver.ml.reranker import CausalLMReranker, load_reranker, reranker_kind

OFFICIAL_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
OFFICIAL_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
OFFICIAL_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
CPU = Placement("cpu", "float32")

QUERY = "How does pgvector index vectors?"
DOCUMENTS = [
    "yes",
    "pgvector adds HNSW and IVFFlat indexes for nearest neighbour search in Postgres.",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Python is a programming language; Rust is a systems language.",
    "Embeddings map text to vectors, and a reranker scores how well a document answers a query. " * 3,
]


def reference_scores(model_dir: Path, query: str, documents: list[str], max_length: int = 8192) -> list[float]:
    """The model card's computation, one unpadded pair at a time."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prefix = tokenizer.encode(OFFICIAL_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(OFFICIAL_SUFFIX, add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    scores = []
    for document in documents:
        body = f"<Instruct>: {OFFICIAL_INSTRUCTION}\n<Query>: {query}\n<Document>: {document}"
        body_ids = tokenizer.encode(body, add_special_tokens=False)[: max_length - len(prefix) - len(suffix)]
        with torch.no_grad():
            logits = model(torch.tensor([prefix + body_ids + suffix])).logits[0, -1]
        scores.append(torch.softmax(torch.stack([logits[no], logits[yes]]), dim=0)[1].item())
    return scores


@pytest.fixture(scope="module")
def reference(tiny_reranker_dir: Path) -> list[float]:
    return reference_scores(tiny_reranker_dir, QUERY, DOCUMENTS)


async def test_service_scores_equal_the_model_card_formula(ml_service, reference) -> None:
    scores = await ml_service.rerank(QUERY, DOCUMENTS)
    assert scores == pytest.approx(reference, abs=1e-5)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(reference) - min(reference) > 0.05, "tiny model too flat: the comparison would be blind"


def test_packed_batch_is_still_exact(tiny_reranker_dir: Path, reference) -> None:
    reranker = CausalLMReranker("tiny", tiny_reranker_dir, CPU)
    lengths = reranker.count_tokens([(QUERY, d) for d in DOCUMENTS])
    assert len(set(lengths)) == len(DOCUMENTS), "documents must differ in length to exercise the packing"
    assert reranker.score([(QUERY, d) for d in DOCUMENTS]) == pytest.approx(reference, abs=1e-5)
    # Order in the batch must not matter either.
    reversed_scores = reranker.score([(QUERY, d) for d in reversed(DOCUMENTS)])
    assert list(reversed(reversed_scores)) == pytest.approx(reference, abs=1e-5)


def test_long_documents_are_truncated_inside_the_prompt(tiny_reranker_dir: Path) -> None:
    """Truncation cuts the body, never the prefix or the suffix the model's answer depends on."""
    max_length = 120
    reranker = CausalLMReranker("tiny", tiny_reranker_dir, CPU, max_length=max_length)
    long_doc = "Hybrid search fuses full text and vectors with reciprocal rank fusion. " * 40
    [length] = reranker.count_tokens([(QUERY, long_doc)])
    assert length == max_length
    expected = reference_scores(tiny_reranker_dir, QUERY, [long_doc, "short"], max_length=max_length)
    assert reranker.score([(QUERY, long_doc), (QUERY, "short")]) == pytest.approx(expected, abs=1e-5)


def test_custom_instruction_changes_the_prompt(tiny_reranker_dir: Path) -> None:
    default = CausalLMReranker("tiny", tiny_reranker_dir, CPU)
    custom = CausalLMReranker("tiny", tiny_reranker_dir, CPU, instruction="Find code that answers the query")
    pair = [(QUERY, DOCUMENTS[1])]
    assert default.score(pair) != pytest.approx(custom.score(pair), abs=1e-7)


def test_classic_cross_encoder_is_sigmoid_of_its_logit(tiny_cross_encoder_dir: Path) -> None:
    reranker = load_reranker("tiny-ce", tiny_cross_encoder_dir, CPU)
    assert reranker.kind == "cross-encoder"
    pairs = [(QUERY, d) for d in DOCUMENTS]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_cross_encoder_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder_dir)).eval()
    with torch.no_grad():
        expected = []
        for query, document in pairs:
            encoded = tokenizer(query, document, return_tensors="pt", truncation=True)
            expected.append(torch.sigmoid(model(**encoded).logits[0, 0]).item())
    assert reranker.score(pairs) == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-3
    lengths = [len(tokenizer(q, d, truncation=True)["input_ids"]) for q, d in pairs]
    assert reranker.count_tokens(pairs) == lengths


def test_reranker_kind_comes_from_the_architecture(tiny_reranker_dir, tiny_cross_encoder_dir, tmp_path) -> None:
    assert reranker_kind(tiny_reranker_dir) == "causal"
    assert reranker_kind(tiny_cross_encoder_dir) == "sequence-classification"
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(Unavailable, match="unsupported reranker architecture"):
        reranker_kind(tmp_path)
    with pytest.raises(Unavailable, match=r"config\.json"):
        reranker_kind(tmp_path / "nowhere")


def test_unknown_hf_id_is_unavailable_not_downloaded() -> None:
    with pytest.raises(Unavailable) as raised:
        resolve_model_path("ragserver-tests/no-such-model")
    assert "HF cache" in raised.value.message and "bootstrap-ml-env.sh" in raised.value.details["fix"]


def test_hf_id_resolves_offline_from_a_hf_home(tiny_reranker_dir: Path, tmp_path: Path) -> None:
    """The Docker models volume shape: Qwen/Qwen3-Reranker-0.6B as an HF cache entry under HF_HOME."""
    snapshot = install_in_hf_cache(tiny_reranker_dir, tmp_path / "hf", "Qwen/Qwen3-Reranker-0.6B")
    entry = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-Reranker-0.6B"
    assert (entry / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "config.json").is_symlink() and (snapshot / "config.json").resolve().parent.name == "blobs"
    code = (
        "from ragserver.ml.loading import resolve_model_path, Placement\n"
        "from ragserver.ml.reranker import load_reranker\n"
        "path = resolve_model_path('Qwen/Qwen3-Reranker-0.6B')\n"
        "r = load_reranker('Qwen/Qwen3-Reranker-0.6B', path, Placement('cpu', 'float32'))\n"
        "import json; print(json.dumps({'path': str(path), 'score': r.score([('q', 'd')])[0]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["path"] == str(snapshot)
    assert result["score"] == pytest.approx(reference_scores(tiny_reranker_dir, "q", ["d"])[0], abs=1e-5)
