"""The `ragserver` command: serve | ingest | crawl | query | ask | check-ml | migrate | mcp.

Commands other than `serve` work in-process on the same Runtime the server uses (store, ML,
services), so `ragserver ingest ./docs` needs no running server. Errors print as one line.

Exit codes: 0 ok, 1 the operation failed (for `serve`: start-up refused the database, e.g. a
schema this release cannot run on), 2 bad usage or input, 3 a dependency is not ready (database
unreachable, ML env missing), 130 interrupted.

Heavy modules (the runtime, uvicorn, the app) are imported by the commands that use them, so
`ragserver --help` stays quick. The CLI never imports api/: app.py composes the HTTP face.
`mcp` is the exception to working in-process: it bridges stdio to a running server's /mcp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragserver.config import Settings, get_settings
from ragserver.errors import ConfigError, InputError, RagServerError, Unavailable
from ragserver.logredact import secrets_masked_in_logs

if TYPE_CHECKING:
    import uvicorn

    from ragserver.runtime import Runtime

Command = Callable[[argparse.Namespace, Settings], int]
AsyncCommand = Callable[[argparse.Namespace, Settings], Coroutine[None, None, int]]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
        logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        # the pool logs every failed connection attempt; the command reports the outcome in one line
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        handler: Command = args.handler
        with secrets_masked_in_logs(settings):  # every command's logs, as `serve` masks them (keys, URL passwords)
            return handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, InputError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RagServerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragserver", description="Self-hosted knowledge server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP + Socket.IO server")
    serve.add_argument("--host", help="bind address (default: HOST)")
    serve.add_argument("--port", type=int, help="port (default: PORT)")
    serve.set_defaults(handler=_serve)

    ingest = sub.add_parser("ingest", help="ingest a file or a folder")
    ingest.add_argument("path", type=Path)
    ingest.add_argument("--tags", default="", help="comma-separated tags")
    ingest.add_argument("--knowledge-type", default="technical")
    ingest.set_defaults(handler=_async(_ingest))

    crawl = sub.add_parser("crawl", help="crawl a documentation site")
    crawl.add_argument("url")
    crawl.add_argument("--max-depth", type=int, default=None)
    crawl.add_argument("--max-pages", type=int, default=None)
    crawl.add_argument("--library", default=None, help="label: the library the site documents")
    crawl.add_argument("--version", default=None, help="label: the version of that library")
    crawl.add_argument("--scope", default=None, help="subpages | hostname | domain (default: hostname)")
    crawl.add_argument("--include", action="append", default=[], metavar="PATTERN", help="glob or /regex/ (repeatable)")
    crawl.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="glob or /regex/ (repeatable)")
    crawl.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="request header (repeatable)"
    )
    crawl.add_argument("--content-selector", default=None, metavar="CSS", help="the pages' main content")
    crawl.add_argument(
        "--exclude-selector", action="append", default=[], metavar="CSS", help="chrome to cut (repeatable)"
    )
    crawl.add_argument("--keep-link-pages", action="store_true", help="store index and table-of-contents pages too")
    crawl.set_defaults(handler=_async(_crawl))

    query = sub.add_parser("query", help="search the knowledge base")
    query.add_argument("text")
    query.add_argument("--json", action="store_true", help="print the full JSON answer")
    query.add_argument("--source", default=None, help="only this source_id")
    query.add_argument("--match-count", type=int, default=5)
    query.add_argument("--mode", choices=["chunks", "pages"], default="chunks")
    query.add_argument("--library", default=None, help="only sources labelled with this library")
    query.add_argument("--version", default=None, help="only sources labelled with this version")
    query.set_defaults(handler=_async(_query))

    ask = sub.add_parser("ask", help="answer a question from the knowledge base with the LLM (LLM_URL, LLM_MODEL)")
    ask.add_argument("question")
    ask.add_argument("--source", default=None, help="only this source_id")
    ask.add_argument("--match-count", type=int, default=5, help="chunks retrieved to answer from")
    ask.add_argument("--library", default=None, help="only sources labelled with this library")
    ask.add_argument("--version", default=None, help="only sources labelled with this version")
    ask.set_defaults(handler=_async(_ask))

    check = sub.add_parser("check-ml", help="check the ML environment and models; non-zero when not ready")
    check.set_defaults(handler=_check_ml)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_async(_migrate))

    mcp = sub.add_parser("mcp", help="MCP over stdio, bridged to a running server (RAGSERVER_URL, RAGSERVER_API_KEY)")
    mcp.add_argument("--url", default=None, help="the server's base URL (default: RAGSERVER_URL)")
    mcp.set_defaults(handler=_async(_mcp))
    return parser


def _async(command: AsyncCommand) -> Command:
    """Run an async command to completion on a fresh event loop."""
    return lambda args, settings: asyncio.run(command(args, settings))


async def _mcp(args: argparse.Namespace, settings: Settings) -> int:
    """Relay MCP between stdin/stdout and the server until the client closes stdin."""
    from ragserver.mcp.stdio import StdioBridge

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per relayed request would drown the client's log
    await StdioBridge(args.url or settings.ragserver_url, settings.ragserver_api_key).serve()
    return EXIT_OK


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until Ctrl-C / SIGTERM (exit 0), or until start-up fails for good (its error, exit 1)."""
    import uvicorn

    from ragserver.app import create_app
    from ragserver.runtime import Runtime

    runtime = Runtime(settings)
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has shut down
        asyncio.run(_serve_until_failed(uvicorn.Server(config), runtime))
    if runtime.failure is not None:
        raise runtime.failure
    return EXIT_OK


async def _serve_until_failed(server: uvicorn.Server, runtime: Runtime) -> None:
    """Run the server; when the runtime fails for good, shut it down as a signal would (gracefully)."""
    serving = asyncio.create_task(server.serve())
    failed = asyncio.create_task(runtime.failed.wait())
    await asyncio.wait({serving, failed}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    failed.cancel()
    await serving


class _Session:
    """A Runtime opened for one CLI command: fail fast on the database, stop cleanly at the end."""

    def __init__(self, settings: Settings, *, ml: bool = True) -> None:
        from ragserver.runtime import Runtime

        self.runtime = Runtime(settings, server=False)
        self.ml = ml

    async def __aenter__(self) -> Runtime:
        await self.runtime.start(ml=self.ml)
        try:
            await self.runtime.wait_ready(with_ml=self.ml)
        except BaseException:
            await self.runtime.stop()
            raise
        return self.runtime

    async def __aexit__(self, *exc_info: object) -> None:
        await self.runtime.stop()


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A tqdm bar (0-100) on stderr; yields the callback that moves it from progress snapshots."""
    from tqdm import tqdm

    with tqdm(total=100, desc=label, bar_format="{l_bar}{bar}| {n:.0f}% {postfix}", file=sys.stderr) as bar:

        def follow(snapshot: dict[str, Any]) -> None:
            bar.n = snapshot["progress"]
            counts = " ".join(f"{name}={value}" for name, value in snapshot["counts"].items())
            bar.set_postfix_str(f"{snapshot['step']} {counts}".strip(), refresh=True)

        yield follow


def _print_summary(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, default=str))


async def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    if not args.path.exists():
        raise InputError(f"{args.path}: no such file or folder")
    tags = [t.strip() for t in args.tags.split(",") if t.strip()]
    async with _Session(settings) as runtime:
        with _progress_bar(f"ingest {args.path.name}") as follow:
            result = await runtime.services.ingest.ingest_path(
                args.path, tags=tags, knowledge_type=args.knowledge_type, on_progress=follow
            )
            await runtime.tracker.drain()
    _print_summary(result)
    return EXIT_OK


async def _crawl(args: argparse.Namespace, settings: Settings) -> int:
    from ragserver.crawl.request import CrawlRequest

    request = CrawlRequest.checked(**_crawl_fields(args))
    async with _Session(settings) as runtime:
        with _progress_bar(f"crawl {args.url}") as follow:
            result = await runtime.services.crawl.crawl(request, on_progress=follow)
    _print_summary(result)
    return EXIT_OK


def _crawl_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The CrawlRequest fields the flags give (unset ones keep the request's defaults)."""
    from ragserver.crawl.headers import parse_header_line

    try:
        headers = dict(parse_header_line(line) for line in args.header)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    given = {
        "max_depth": args.max_depth,
        "max_pages": args.max_pages,
        "library": args.library,
        "version": args.version,
        "scope": args.scope,
        "include_patterns": args.include,
        "exclude_patterns": args.exclude,
        "headers": headers,
        "content_selector": args.content_selector,
        "exclude_selectors": args.exclude_selector,
        "keep_link_pages": args.keep_link_pages,
    }
    return {"url": args.url, **{name: value for name, value in given.items() if value is not None}}


async def _query(args: argparse.Namespace, settings: Settings) -> int:
    async with _Session(settings) as runtime:
        answer = await runtime.services.search.query(
            args.text,
            source_id=args.source,
            match_count=args.match_count,
            return_mode=args.mode,
            library=args.library,
            version=args.version,
        )
    if args.json:
        print(answer.model_dump_json(indent=2))
        return EXIT_OK
    print(f"# {answer.total_found} results ({answer.search_mode}, reranked: {answer.reranking_applied})")
    for rank, hit in enumerate(answer.results, start=1):
        score = hit.rerank_score if hit.rerank_score is not None else hit.fused_score
        print(f"\n{rank}. {hit.title or hit.url}  [{hit.source_id}]  score={score:.4f}")
        print(f"   {hit.url}")
        print("   " + " ".join(hit.content.split())[:300])
    return EXIT_OK


async def _ask(args: argparse.Namespace, settings: Settings) -> int:
    """Stream the answer to stdout as it comes, then the references it could cite (cited ones marked *)."""
    from ragserver.answer import Question, require_llm
    from ragserver.answer.results import DeltaEvent, ErrorEvent

    require_llm(settings)  # before the models load
    question = Question(args.question, args.source, args.match_count, args.library, args.version)
    async with _Session(settings) as runtime:
        stream = await runtime.services.answer.open_stream(question)
        async for event in stream.events():
            if isinstance(event, DeltaEvent):
                print(event.text, end="", flush=True)
            elif isinstance(event, ErrorEvent):
                print()
                raise RagServerError(event.message)
    print()
    for reference in stream.grounding.references:
        mark = "*" if reference.cited else " "
        print(f"[{reference.number}]{mark} {reference.title or reference.url}  {reference.url}")
    return EXIT_OK


def _check_ml(args: argparse.Namespace, settings: Settings) -> int:
    from ragserver.ml.check import run_check

    report = run_check(settings)
    print(json.dumps(report, indent=2, default=str))
    return EXIT_OK if report.get("ok") else EXIT_UNAVAILABLE


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    if settings.store_backend == "supabase":  # PostgREST cannot run DDL: migrate over a Postgres connection
        raise ConfigError(
            "ragserver migrate cannot migrate over Supabase RPC: set DATABASE_URL to the project's direct "
            "Postgres connection string (port 5432) for this command"
        )
    async with _Session(settings, ml=False) as runtime:
        applied = runtime.migrations
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("database schema is up to date")
    return EXIT_OK
