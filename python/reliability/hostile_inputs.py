"""Hostile files through the parsers, the chunker and crawl discovery: no crash, no hang, bounded memory.

    python python/reliability/hostile_inputs.py                # full size (inputs up to ~20 MB)
    python python/reliability/hostile_inputs.py --scale 0.05   # what the fast tier runs

Each case builds one input (huge lines, deep nesting, unclosed constructs, invalid UTF-8,
truncated or bomb PDFs, gzip bombs, sitemaps and llms.txt files made to trip regexes) and runs
the real code path: `parse_bytes` -> `chunk_document` for files, `sitemap_text` + `read`-side
regexes for discovery. Allowed outcomes: documents and chunks, or a RagServerError with a
message for the user. Anything else (another exception, MemoryError) fails the case. Per case
we report seconds and peak RSS (sampled every 5 ms), under an address-space limit so a bomb
cannot take the machine down; a case over --max-seconds fails too.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MB = 1024 * 1024
MAX_TOKENS = 256


def _estimate(texts: list[str]) -> list[int]:
    """The server's own token estimate when no tokenizer is loaded (~4 characters per token)."""
    from ragserver.ml.service import estimate_tokens

    return [estimate_tokens(t) for t in texts]


def run_file(data: bytes, filename: str) -> str:
    """Parse and chunk like an upload does; returns a short summary."""
    from ragserver.ingest.chunk import chunk_document
    from ragserver.ingest.formats import detect_format
    from ragserver.ingest.parse import parse_bytes

    docs = chunks = 0
    for doc in parse_bytes(data, filename, detect_format(filename)):
        docs += 1
        made, _ = chunk_document(doc, max_tokens=MAX_TOKENS, count_tokens=_estimate)
        chunks += len(made)
    return f"{docs} docs, {chunks} chunks"


def run_sitemap(body: bytes) -> str:
    """What discovery does with a fetched sitemap body: inflate under the cap, find <loc> entries."""
    from ragserver.crawl.discover import LOC, is_sitemap_xml, sitemap_text
    from ragserver.crawl.fetch import Fetched

    text = sitemap_text(Fetched("http://x/s.xml", "http://x/s.xml", 200, "application/xml", body), 10 * MB)
    return f"sitemap={is_sitemap_xml(text)}, {len(LOC.findall(text))} locs"


def run_llms(text: str) -> str:
    from ragserver.crawl.discover import markdown_links, split_llms_full

    sections = sum(1 for _ in split_llms_full("http://x/llms-full.txt", text))
    return f"{sections} sections, {len(markdown_links(text))} links"


def _pdf(size: int) -> bytes:
    from test_parse import make_pdf

    lines = [f"Line {i} of a page about hostile inputs and parsers." for i in range(40)]
    return make_pdf([lines] * max(1, size // 3000), title="Hostile")


def _pdf_flate_bomb(size: int) -> bytes:
    """A valid one-page PDF whose content stream inflates ~1000x (spaces after a text operator)."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n")]
    parts += [packer.compress(b" " * MB) for _ in range(size * 1000 // MB)]  # never the whole thing in memory
    stream = b"".join([*parts, packer.flush()])
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _gzip_bomb(size: int) -> bytes:
    """gzip of a sitemap header and `size` zero bytes, compressed in steps (never whole in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"<urlset>")]
    parts += [packer.compress(b"\0" * MB) for _ in range(size // MB)]
    return b"".join([*parts, packer.flush()])


def _code_file(lines: int) -> bytes:
    """One fenced block of many distinct identifiers (too big for one full-text index entry)."""
    body = "".join(f"ident_{i:08x}_{i * 2654435761 % 4294967296:08x} = {i}\n" for i in range(lines))
    return f"# Code\n\n```python\n{body}```\n".encode()


def cases(scale: float) -> dict[str, Callable[[], str]]:
    """Name -> zero-argument runner; input sizes scale with `scale` (1.0: ~5-20 MB inputs)."""
    n = max(1000, int(1_000_000 * scale))
    big = max(MB // 10, int(20 * MB * scale))
    rng = __import__("random").Random(6)
    return {
        "md one huge line": lambda: run_file(b"word" * (big // 4), "a.md"),
        "md one huge token (no spaces)": lambda: run_file(b"x" * big, "a.md"),
        "md many fences": lambda: run_file(b"```\n" * n, "a.md"),
        "md unclosed fence": lambda: run_file(b"```python\n" + b"x = 1\n" * n, "a.md"),
        "md many headings": lambda: run_file(b"# h\n" * n, "a.md"),
        "md deep blockquote": lambda: run_file(b">" * n + b" a", "a.md"),
        "md backtick run": lambda: run_file(b"`" * big, "a.md"),
        "md unclosed front matter": lambda: run_file(b"---\n" + b"title: x\n" * n, "a.md"),
        "md link openers": lambda: run_file(b"[a](" * n, "a.md"),
        "md huge code block": lambda: run_file(_code_file(n // 5), "a.md"),
        "md huge heading": lambda: run_file(b"# " + b"head " * (big // 5) + b"\n\ntext\n", "a.md"),
        "md tildes and hashes": lambda: run_file(b"~~~ #\n#####\n" * n, "a.md"),
        "txt invalid utf-8": lambda: run_file(rng.randbytes(big), "a.txt"),
        "txt sentence flood": lambda: run_file(b"a. " * n, "a.txt"),
        "txt NUL and controls": lambda: run_file(b"\0\x01\x02\x1b[31m" * n, "a.txt"),
        "html nested divs": lambda: run_file(b"<div>" * n + b"x", "a.html"),
        "html nested lists": lambda: run_file(b"<ul><li>" * (n // 2) + b"x", "a.html"),
        "html nested tables": lambda: run_file(b"<table><tr><td>" * (n // 4) + b"x", "a.html"),
        "html huge attribute": lambda: run_file(b'<p class="' + b"a" * big + b'">x</p>', "a.html"),
        "html entity flood": lambda: run_file(b"<p>" + b"&amp;&#x1F600;&bogus;" * n + b"</p>", "a.html"),
        "html unclosed comment": lambda: run_file(b"<p>x</p><!--" + b"a" * big, "a.html"),
        "html pre with backticks": lambda: run_file(b"<pre>" + b"`" * big + b"</pre>", "a.html"),
        "html many pre blocks": lambda: run_file(
            b"<pre><code class='language-py'>```</code></pre>" * (n // 10), "a.html"
        ),
        "pdf truncated (10 cuts)": lambda: "; ".join(_truncated_pdf(_pdf(big // 20), k) for k in range(1, 11)),
        "pdf garbage after header": lambda: run_file(b"%PDF-1.7\n" + rng.randbytes(big // 4), "a.pdf"),
        "pdf deep array nesting": lambda: run_file(b"%PDF-1.4\n1 0 obj\n" + b"[" * n + b"\nendobj\n%%EOF", "a.pdf"),
        "pdf page count lie": lambda: run_file(_pdf(3000).replace(b"/Count 1 ", b"/Count 999999999 "), "a.pdf"),
        "pdf flate bomb": lambda: run_file(_pdf_flate_bomb(big // 20), "a.pdf"),
        "jsonl deep nesting": lambda: run_file(b'{"_id": 1, "text": ' + b"[" * n + b"\n", "a.jsonl"),
        "jsonl one huge line": lambda: run_file(json.dumps({"_id": 1, "text": "w " * (big // 2)}).encode(), "a.jsonl"),
        "jsonl invalid utf-8": lambda: run_file(
            b'{"_id": 1, "text": "' + rng.randbytes(big // 4).replace(b'"', b"") + b'"}', "a.jsonl"
        ),
        "sitemap gzip bomb": lambda: run_sitemap(_gzip_bomb(50 * big)),
        "sitemap truncated gzip": lambda: run_sitemap(gzip.compress(b"<urlset><loc>http://x/a</loc>" * n)[: n // 2]),
        "sitemap unclosed locs": lambda: run_sitemap(b"<urlset>" + b"<loc>a" * n),
        "sitemap many locs": lambda: run_sitemap(b"<urlset>" + b"<url><loc> http://x/p </loc></url>" * n),
        "llms-full many headings": lambda: run_llms("# h\n```\n" * n),
        "llms link openers": lambda: run_llms('[a](x "' * n),
    }


def _truncated_pdf(pdf: bytes, tenth: int) -> str:
    from ragserver.errors import InputError

    try:
        return run_file(pdf[: len(pdf) * tenth // 10 - 1], "a.pdf")
    except InputError as exc:
        return f"InputError({exc.message[:40]!r})"


def measure(run: Callable[[], str]) -> dict:
    """Outcome, seconds and peak RSS of one case (RSS sampled by a thread every 5 ms)."""
    from ragserver.errors import RagServerError

    process = psutil.Process()
    peak = process.memory_info().rss
    baseline = peak
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        outcome, ok = run(), True
    except RagServerError as exc:
        outcome, ok = f"{type(exc).__name__}: {exc.message[:120]}", True
    except BaseException as exc:  # the finding: anything that is not our error class
        outcome, ok = f"CRASH {type(exc).__name__}: {str(exc)[:200]}", False
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "ok": ok,
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / MB),
        "base_mb": round(baseline / MB),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="a case slower than this fails (a hang)")
    parser.add_argument("--max-rss-mb", type=int, default=2048, help="a case whose peak RSS passes this fails")
    parser.add_argument("--address-space-mb", type=int, default=6144, help="hard RLIMIT_AS of this process")
    parser.add_argument("--json", action="store_true", help="one JSON object per case on stdout")
    parser.add_argument("only", nargs="*", help="run only cases whose name contains one of these")
    args = parser.parse_args()
    limit = args.address_space_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.setdefault("CRAWL4AI_NO_CLOUD_NOTICE", "1")
    failures = 0
    for name, run in cases(args.scale).items():
        if args.only and not any(word in name for word in args.only):
            continue
        result = {"case": name, **measure(run)}
        result["ok"] = (
            result["ok"] and result["seconds"] <= args.max_seconds and result["peak_rss_mb"] <= args.max_rss_mb
        )
        failures += not result["ok"]
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            mark = "ok  " if result["ok"] else "FAIL"
            timing = f"{result['seconds']:7.2f} s  peak {result['peak_rss_mb']:5d} MB"
            print(f"{mark} {name:32} {timing}  {result['outcome'][:90]}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
