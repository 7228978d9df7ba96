"""Every MCP tool through the SDK's own client over real HTTP: a live server (uvicorn on 127.0.0.1),
the real store, the tiny real models, documents uploaded through the HTTP API and a fixture site crawled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.mcp_client import call, call_error
from support.mcp_fixtures import LONG_MD, READ_TOOLS, VECTORS_MD, WRITE_TOOLS, Knowledge
from support.polling import apoll_until
from support.site_fixtures import docs_site

from ragserver.progress import FINAL

pytestmark = pytest.mark.timeout(300)

TOKEN = "secret-docs-token-0123"


async def test_tools_are_listed_with_descriptions_and_schemas(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert set(tools) == READ_TOOLS | WRITE_TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 80, tool.name
            assert tool.input_schema["type"] == "object" and tool.output_schema, tool.name
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (tool.name in READ_TOOLS), tool.name
        search = tools["rag_search_knowledge_base"].input_schema
        assert search["required"] == ["query"]
        assert set(search["properties"]) >= {"query", "source_id", "match_count", "return_mode", "library", "version"}


async def test_available_sources_have_counts_and_labels(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        answer = await call(mcp, "rag_get_available_sources")
        assert answer["success"] is True and answer["count"] == len(answer["sources"])
        by_id = {source["source_id"]: source for source in answer["sources"]}
        vectors = by_id[knowledge.vectors]
        assert vectors["title"] and vectors["page_count"] == 1 and vectors["chunk_count"] >= 2
        assert vectors["code_example_count"] == 1
        assert (vectors["library"], vectors["version"]) == ("pgvector", "0.8")
        only = await call(mcp, "rag_get_available_sources", {"library": "zebra"})
        assert [source["source_id"] for source in only["sources"]] == [knowledge.release]


async def test_search_pages_mode_cites_and_previews(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        answer = await call(mcp, "rag_search_knowledge_base", {"query": "zebra migration tool", "match_count": 10})
        assert answer["success"] is True and answer["return_mode"] == "pages"
        hit = next(r for r in answer["results"] if r["source_id"] == knowledge.release)
        assert {"page_id", "id", "url", "title", "heading_path", "preview", "word_count", "fused_score"} <= set(hit)
        assert "zebra migration tool" in hit["preview"] and hit["heading_path"][-1] == "Version 2.0"
        assert hit["url"] and hit["title"] and hit["id"] == hit["page_id"]
        stages = answer["stages"]
        assert stages["search_mode"] == "hybrid" and stages["embedding_model"]
        assert stages["reranking_applied"] is answer["reranked"]
        assert 0 <= stages["reranked_count"] <= stages["rerank_candidates"]
        assert answer["latency_ms"] > 0 and answer["total_found"] == len(answer["results"])


async def test_search_chunks_mode_and_source_filter(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        args = {
            "query": "HNSW ef_search recall",
            "return_mode": "chunks",
            "source_id": knowledge.vectors,
            "match_count": 10,
        }
        answer = await call(mcp, "rag_search_knowledge_base", args)
        assert answer["return_mode"] == "chunks" and answer["results"]
        assert {r["source_id"] for r in answer["results"]} == {knowledge.vectors}
        chunk = next(r for r in answer["results"] if "ef_search" in r["content"])
        assert chunk["heading_path"][-1] == "HNSW indexes" and chunk["url"] and chunk["page_id"]
        assert chunk["similarity"] is not None and chunk["fused_score"] > 0
        # a blank source_id is no filter, as Archon treats it
        unfiltered = await call(mcp, "rag_search_knowledge_base", {**args, "source_id": "", "query": "zebra migration"})
        assert knowledge.release in {r["source_id"] for r in unfiltered["results"]}


async def test_search_library_and_version_filters(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        args = {"query": "indexes tool", "match_count": 20, "return_mode": "chunks"}
        labelled = await call(mcp, "rag_search_knowledge_base", {**args, "library": "pgvector", "version": "0.8"})
        assert labelled["results"] and {r["source_id"] for r in labelled["results"]} == {knowledge.vectors}
        other_version = await call(mcp, "rag_search_knowledge_base", {**args, "library": "pgvector", "version": "9.9"})
        assert other_version["results"] == []


async def test_code_examples(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        answer = await call(
            mcp, "rag_search_code_examples", {"query": "create hnsw index", "source_id": knowledge.vectors}
        )
        [example] = answer["results"]
        assert "CREATE INDEX ON items USING hnsw" in example["content"] and example["language"] == "python"
        assert example["heading_path"][-1] == "HNSW indexes" and example["url"] and example["page_id"]
        assert answer["search_mode"] == "hybrid" and answer["reranked"] is False


async def test_list_pages_and_read_a_page_by_id_and_url(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        listing = await call(mcp, "rag_list_pages_for_source", {"source_id": knowledge.vectors})
        assert listing["source_id"] == knowledge.vectors and listing["total"] == 1 and listing["next_offset"] is None
        [page] = listing["pages"]
        assert page["id"] == page["page_id"] and page["word_count"] > 10 and page["chunk_count"] >= 2
        for section, total in [("# pgvector guide", 1), ("pgvector", 1), ("# Release notes", 0)]:
            by_section = await call(
                mcp, "rag_list_pages_for_source", {"source_id": knowledge.vectors, "section": section}
            )
            assert by_section["total"] == total, section
        by_id = await call(mcp, "rag_read_full_page", {"page_id": page["page_id"]})
        assert by_id["page"]["full_content"].strip() == VECTORS_MD.strip()
        assert by_id["page"]["truncated"] is False and by_id["page"]["source_id"] == knowledge.vectors
        by_url = await call(mcp, "rag_read_full_page", {"url": page["url"]})
        assert by_url["page"]["page_id"] == page["page_id"]
        as_text = await call(mcp, "rag_read_full_page", {"page_id": str(page["page_id"])})
        assert as_text["page"]["page_id"] == page["page_id"]
        # Archon's clients send "" for the argument they do not use; with both, page_id wins
        blank_id = await call(mcp, "rag_read_full_page", {"page_id": "", "url": page["url"]})
        assert blank_id["page"]["page_id"] == page["page_id"]
        both = await call(mcp, "rag_read_full_page", {"page_id": page["page_id"], "url": "https://elsewhere.example/"})
        assert both["page"]["page_id"] == page["page_id"]


async def test_a_long_page_is_read_in_slices(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        [page] = (await call(mcp, "rag_list_pages_for_source", {"source_id": knowledge.almanac}))["pages"]
        parts, offset = [], 0
        while offset is not None:
            slice_ = await call(mcp, "rag_read_full_page", {"page_id": page["id"], "offset": offset, "max_chars": 5000})
            content = slice_["page"]
            assert len(content["full_content"]) <= 5000
            parts.append(content["full_content"])
            offset = content["next_offset"]
        assert len(parts) > 3
        assert "".join(parts).strip() == LONG_MD.strip()


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("rag_search_knowledge_base", {}, "query"),
        ("rag_search_knowledge_base", {"query": "x" * 5000}, "query"),
        ("rag_search_knowledge_base", {"query": "zebra", "match_count": 0}, "match_count"),
        ("rag_search_knowledge_base", {"query": "zebra", "return_mode": "everything"}, "return_mode"),
        ("rag_search_knowledge_base", {"query": "   "}, "query must not be empty"),
        ("rag_search_knowledge_base", {"query": "zebra", "source_id": "no-such-source"}, "no-such-source"),
        ("rag_search_code_examples", {"query": "zebra", "source_id": "no-such-source"}, "no-such-source"),
        ("rag_list_pages_for_source", {"source_id": "no-such-source"}, "no-such-source"),
        ("rag_list_pages_for_source", {}, "source_id"),
        ("rag_read_full_page", {}, "page_id"),
        ("rag_read_full_page", {"page_id": 987654321}, "987654321"),
        ("rag_read_full_page", {"page_id": "not-a-number"}, "page_id"),
        ("rag_read_full_page", {"page_id": "²"}, "page_id"),
        ("rag_read_full_page", {"page_id": "9" * 5000}, "page_id"),
        ("rag_read_full_page", {"page_id": True}, "page_id"),
        ("get_progress", {"progress_id": "no-such-operation"}, "progress ids from crawl_url"),
        ("rag_read_full_page", {"url": "https://nowhere.example/page"}, "nowhere.example"),
        ("get_progress", {"progress_id": "no-such-operation"}, "no-such-operation"),
        ("stop_operation", {"progress_id": "no-such-operation"}, "no-such-operation"),
        ("refresh_source", {"source_id": "no-such-source"}, "no-such-source"),
        ("crawl_url", {"url": "file:///etc/passwd"}, "file"),
        ("crawl_url", {"url": "https://example.org", "max_depth": 99}, "max_depth"),
        ("no_such_tool", {}, "no_such_tool"),
    ],
)
async def test_bad_calls_are_tool_errors_and_the_session_goes_on(
    knowledge: Knowledge, tool: str, arguments: dict[str, Any], says: str
) -> None:
    async with knowledge.session() as mcp:
        message = await call_error(mcp, tool, arguments)
        assert says in message, message
        assert "Traceback" not in message and message.strip() != f"Error executing tool {tool}"
        assert (await call(mcp, "rag_get_available_sources"))["success"] is True


async def test_an_upload_refreshed_is_refused_with_a_reason(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        message = await call_error(mcp, "refresh_source", {"source_id": knowledge.release})
        assert "not crawled from a URL" in message


async def test_crawl_follow_refresh_and_stop(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp:
        with docs_site() as site:
            options = {
                "max_depth": 2,
                "library": "fixture-docs",
                "scope": "hostname",
                "headers": {"X-Docs-Token": TOKEN},
            }
            started = await call(mcp, "crawl_url", {"url": site.url("/"), **options})
            assert started["success"] is True and started["progress_id"] and started["source_id"]

            async def progress(progress_id: str) -> dict[str, Any]:
                snapshot: dict[str, Any] = (await call(mcp, "get_progress", {"progress_id": progress_id}))["operation"]
                return snapshot

            done = await apoll_until(
                lambda: progress(started["progress_id"]),
                lambda s: s["status"] in FINAL,
                what="the crawl to end",
            )
            assert done["status"] == "completed" and done["type"] == "crawl", done
            assert done["name"] == site.url("/")  # what the page names the operation's card after
            assert done["counts"]["pages_crawled"] == 11
            assert all(headers.get("X-Docs-Token") == TOKEN for _, headers in site.requests)
            sources = await call(mcp, "rag_get_available_sources", {"library": "fixture-docs"})
            assert TOKEN not in json.dumps(sources) and TOKEN not in json.dumps(done)
            found = await call(
                mcp,
                "rag_search_knowledge_base",
                {"query": "hello function greets", "library": "fixture-docs", "match_count": 20},
            )
            assert site.url("/docs/intro.html") in [hit["url"] for hit in found["results"]]

            for path in [p for p in site.routes if p.endswith(".html") or p == "/"]:
                site.routes[path].delay_s = 0.3  # slow enough that the stop lands mid-refresh
            refresh = await call(mcp, "refresh_source", {"source_id": started["source_id"]})
            stopped = await call(mcp, "stop_operation", {"progress_id": refresh["progress_id"]})
            assert stopped["cancelled"] is True
            end = await apoll_until(
                lambda: progress(refresh["progress_id"]), lambda s: s["status"] in FINAL, what="the refresh to stop"
            )
            assert end["status"] == "cancelled", end
            (crawled,) = [s for s in sources["sources"] if s["source_id"] == started["source_id"]]
            assert end["name"] == crawled["title"] != ""  # a refresh is named after its source
            again = await call(mcp, "stop_operation", {"progress_id": refresh["progress_id"]})
            assert again["cancelled"] is False
            kept = await call(mcp, "rag_list_pages_for_source", {"source_id": started["source_id"]})
            assert kept["total"] == 11


async def test_pages_mode_fills_the_pages_asked_for_when_one_page_holds_the_top_chunks(knowledge: Knowledge) -> None:
    # every entry of the long almanac matches, so the top chunks are all on that one page
    query = {"query": "quokkas on Rottnest Island with friendly faces", "match_count": 3, "return_mode": "pages"}
    async with knowledge.session() as mcp:
        chunks = await call(mcp, "rag_search_knowledge_base", {**query, "return_mode": "chunks", "match_count": 30})
        assert {hit["source_id"] for hit in chunks["results"]} == {knowledge.almanac}
        pages = await call(mcp, "rag_search_knowledge_base", query)
    assert len(pages["results"]) == 3 and len({hit["page_id"] for hit in pages["results"]}) == 3
    assert knowledge.almanac in {hit["source_id"] for hit in pages["results"]}
