"""CatalogService on a real embedded Postgres: sources by library/version, page listings, page reads."""

from __future__ import annotations

import pytest

from ragserver.catalog import CatalogService
from ragserver.catalog.service import MAX_READ_CHARS
from ragserver.domain import Chunk, Document, SourceInfo, source_labels
from ragserver.errors import InputError, NotFound
from ragserver.store import Store

SITE = "https://docs.example"


def doc_chunks(markdown: str) -> list[Chunk]:
    """One chunk per paragraph, each under the last heading above it (as the chunker records them)."""
    chunks: list[Chunk] = []
    heading: list[str] = []
    for block in markdown.split("\n\n"):
        if block.startswith("#"):
            heading = [block.lstrip("#").strip()]
        else:
            chunks.append(Chunk(len(chunks), block, list(heading)))
    return chunks


async def commit(store: Store, source_id: str, pages: dict[str, tuple[str, str]], **labels: str) -> list[int]:
    """One committed generation of the source: url -> (title, markdown); returns the page ids in order."""
    run = await store.begin_run(
        SourceInfo(source_id, source_id, SITE, metadata=source_labels(labels.get("library"), labels.get("version"))),
        "crawl",
    )
    ids = []
    for url, (title, markdown) in pages.items():
        ids.append(
            await store.write_document(source_id, run, Document(url, title, markdown), doc_chunks(markdown), [], None)
        )
    await store.commit_run(source_id, run)
    return ids


DOCS = {
    f"{SITE}/guide/install": ("Install | Docs", "# Installing\n\nRun pip install thing.\n\nThen check it."),
    f"{SITE}/guide/configure": ("Configure | Docs", "Intro text without heading.\n\n# Settings\n\nSet PORT."),
    f"{SITE}/api/client": ("Client API", "No headings at all, just some words here."),
    f"{SITE}/api/100%_done": ("Percent", "# Literal\n\nA URL with LIKE wildcards in it."),
}


@pytest.fixture
def catalog(store: Store) -> CatalogService:
    return CatalogService(store)


async def test_listing_in_url_order_with_sizes(store: Store, catalog: CatalogService) -> None:
    ids = dict(zip(DOCS, await commit(store, "docs", DOCS), strict=True))
    listing = await catalog.pages("docs")
    assert [p.url for p in listing.pages] == sorted(DOCS)
    assert (listing.total, listing.offset, listing.limit, listing.next_offset, listing.section) == (
        4,
        0,
        100,
        None,
        None,
    )
    by_url = {p.url: p for p in listing.pages}
    for url, (title, markdown) in DOCS.items():
        page = by_url[url]
        assert page.id == page.page_id == ids[url]
        assert page.title == title
        assert page.char_count == len(markdown) and page.word_count == len(markdown.split())
        assert page.chunk_count == len(doc_chunks(markdown))
    assert by_url[f"{SITE}/guide/install"].section_title == "Installing"
    assert by_url[f"{SITE}/guide/configure"].section_title == "Settings", "the first heading, after untitled text"
    assert by_url[f"{SITE}/api/client"].section_title == "Client API", "no heading: the title"


async def test_paging_through_a_listing(store: Store, catalog: CatalogService) -> None:
    pages = {f"{SITE}/p{n:02d}": (f"Page {n}", f"# Page {n}\n\nbody {n}") for n in range(7)}
    await commit(store, "docs", pages)
    seen, offset, windows = [], 0, []
    while offset is not None:
        window = await catalog.pages("docs", offset=offset, limit=3)
        assert window.total == 7 and window.offset == offset and window.limit == 3
        windows.append(len(window.pages))
        seen += [p.url for p in window.pages]
        offset = window.next_offset
    assert windows == [3, 3, 1] and seen == sorted(pages)
    past = await catalog.pages("docs", offset=10, limit=3)
    assert (past.pages, past.total, past.next_offset) == ([], 7, None)
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**31}):
        with pytest.raises(InputError):
            await catalog.pages("docs", **bad)


async def test_section_filter(store: Store, catalog: CatalogService) -> None:
    await commit(store, "docs", DOCS)

    async def urls(section: str) -> list[str]:
        listing = await catalog.pages("docs", section=section)
        assert listing.total == len(listing.pages) and listing.section == section.strip()
        return [p.url.removeprefix(SITE) for p in listing.pages]

    assert await urls("/guide") == ["/guide/configure", "/guide/install"]
    assert await urls("/GUIDE/inst") == ["/guide/install"], "path prefixes ignore case"
    assert await urls(f"{SITE}/api/") == ["/api/100%_done", "/api/client"]
    assert await urls("/api/100%") == ["/api/100%_done"]
    assert await urls("/api/1_0") == [], "LIKE wildcards in a section are literal"
    assert await urls("settings") == ["/guide/configure"], "the first heading"
    assert await urls("client api") == ["/api/client"], "the title, ignoring case"
    assert await urls("/nowhere") == [] and await urls("zzz") == []
    assert (await catalog.pages("docs", section="  ")).total == 4, "a blank section is every page"
    windowed = await catalog.pages("docs", section="/guide", limit=1)
    assert (windowed.total, windowed.next_offset, len(windowed.pages)) == (2, 1, 1)


async def test_unknown_source_is_not_found(store: Store, catalog: CatalogService) -> None:
    with pytest.raises(NotFound):
        await catalog.pages("missing")
    await store.begin_run(SourceInfo("fresh", "fresh", SITE), "crawl")  # exists, nothing committed yet
    assert (await catalog.pages("fresh")).total == 0


async def test_only_the_active_generation_is_read(store: Store, catalog: CatalogService) -> None:
    [old_id] = await commit(store, "docs", {f"{SITE}/a": ("A", "# Old\n\nold text")})
    run = await store.begin_run(SourceInfo("docs", "docs", SITE), "crawl")
    new_id = await store.write_document("docs", run, Document(f"{SITE}/a", "A", "# New\n\nnew text"), [], [], None)
    staged = await store.write_document("docs", run, Document(f"{SITE}/b", "B", "staged"), [], [], None)
    assert [p.page_id for p in (await catalog.pages("docs")).pages] == [old_id]
    assert (await catalog.read_page(url=f"{SITE}/a")).full_content == "# Old\n\nold text"
    with pytest.raises(NotFound):
        await catalog.read_page(page_id=staged)
    await store.commit_run("docs", run)
    assert [p.page_id for p in (await catalog.pages("docs")).pages] == [new_id, staged]
    assert (await catalog.read_page(url=f"{SITE}/a")).full_content == "# New\n\nnew text"
    with pytest.raises(NotFound):
        await catalog.read_page(page_id=old_id)


async def test_read_by_id_and_by_url(store: Store, catalog: CatalogService) -> None:
    llms = f"{SITE}/llms-full.txt"
    pages = {
        f"{SITE}/guide/": ("Guide", "# Guide\n\nthe guide"),
        f"{SITE}/ref": ("Ref", "# Ref\n\nthe reference"),
        f"{llms}#section-1": ("One", "# One\n\nfirst section"),
        f"{llms}#section-2": ("Two", "# Two\n\nsecond section"),
    }
    guide, ref, one, two = await commit(store, "docs", pages)
    page = await catalog.read_page(page_id=ref)
    assert (page.page_id, page.source_id, page.url, page.title) == (ref, "docs", f"{SITE}/ref", "Ref")
    assert page.full_content == "# Ref\n\nthe reference" and page.metadata == {}
    assert (page.offset, page.next_offset, page.truncated) == (0, None, False)
    assert (page.char_count, page.word_count) == (len(page.full_content), 4)

    async def by_url(url: str) -> int:
        return (await catalog.read_page(url=url)).page_id

    assert await by_url(f"{SITE}/ref") == ref
    assert await by_url(f"{SITE}/ref/") == ref, "a trailing slash more"
    assert await by_url(f"{SITE}/guide") == guide, "a trailing slash less"
    assert await by_url(f"{SITE}/ref#usage") == ref, "an anchor into the page"
    assert await by_url(f"  {SITE}/guide/#top ") == guide
    assert await by_url(f"{llms}#section-2") == two
    assert await by_url(llms) == one, "no fragment asked: the first of the file's sections"
    for missing in (f"{llms}#section-9", f"{SITE}/nowhere", f"{SITE}/re"):
        with pytest.raises(NotFound):
            await catalog.read_page(url=missing)
    with pytest.raises(NotFound):
        await catalog.read_page(page_id=two + 1000)


async def test_paging_through_a_long_page_rebuilds_it_exactly(store: Store, catalog: CatalogService) -> None:
    paragraphs = [
        f"## Part {n}\n\n" + "\n".join(f"línea {n}.{i} — ünïcode ✓ 🚀 text" for i in range(9)) for n in range(40)
    ]
    markdown = "\n\n".join(paragraphs) + "\n\n" + "x" * 3000 + "\ntail without newline"
    [page_id] = await commit(store, "docs", {f"{SITE}/long": ("Long", markdown)})
    max_chars = 700
    slices, offset = [], 0
    while True:
        page = await catalog.read_page(page_id=page_id, offset=offset, max_chars=max_chars)
        assert page.offset == offset and page.char_count == len(markdown)
        assert page.word_count == len(markdown.split())
        assert 0 < len(page.full_content) <= max_chars
        assert page.truncated == (page.next_offset is not None)
        slices.append(page.full_content)
        if page.next_offset is None:
            break
        assert page.next_offset == offset + len(page.full_content)
        offset = page.next_offset
    assert "".join(slices) == markdown
    start = 0
    for piece in slices[:-1]:
        window = markdown[start : start + max_chars]
        rest = window[len(piece) :]
        if "\n\n" in window[max_chars // 2 :]:
            assert piece.endswith("\n\n") and "\n\n" not in rest, "cut after the last paragraph break"
        elif "\n" in window[max_chars // 2 :]:
            assert piece.endswith("\n") and "\n" not in rest, "else after the last line break"
        else:
            assert piece == window, "no break near: cut at max_chars"
        start += len(piece)
    assert sum(piece.endswith("\n\n") for piece in slices) > 10 and sum(len(p) == max_chars for p in slices) >= 3
    whole = await catalog.read_page(url=f"{SITE}/long", max_chars=MAX_READ_CHARS)
    assert whole.full_content == markdown and not whole.truncated


async def test_read_page_bad_input(store: Store, catalog: CatalogService) -> None:
    [page_id] = await commit(store, "docs", {f"{SITE}/a": ("A", "short page")})
    end = await catalog.read_page(page_id=page_id, offset=len("short page"))
    assert (end.full_content, end.next_offset, end.truncated) == ("", None, False)
    bad_reads = (
        {},
        {"page_id": page_id, "url": f"{SITE}/a"},
        {"url": "   "},
        {"url": "x" * 5000},
        {"page_id": 0},
        {"page_id": 2**63},
        {"page_id": page_id, "max_chars": 0},
        {"page_id": page_id, "max_chars": MAX_READ_CHARS + 1},
        {"page_id": page_id, "offset": -1},
        {"page_id": page_id, "offset": 2**31},
        {"page_id": page_id, "offset": len("short page") + 1},
    )
    for args in bad_reads:
        with pytest.raises(InputError):
            await catalog.read_page(**args)


async def test_sources_by_library_and_version(store: Store, catalog: CatalogService) -> None:
    await commit(store, "react18", {f"{SITE}/r18": ("R", "react 18")}, library="React", version="18.2")
    await commit(store, "react19", {f"{SITE}/r19": ("R", "react 19")}, library="react", version="19")
    await commit(store, "vue", {f"{SITE}/v": ("V", "vue")}, library="Vue")
    await commit(store, "plain", {f"{SITE}/p": ("P", "plain")})

    async def ids(**filters: str | None) -> list[str]:
        return sorted(s.source_id for s in await catalog.sources(**filters))

    assert await ids() == ["plain", "react18", "react19", "vue"]
    assert await ids(library="REACT") == ["react18", "react19"]
    assert await ids(library=" react ", version="18.2") == ["react18"]
    assert await ids(version="19") == ["react19"]
    assert await ids(library="react", version="17") == []
    assert await ids(library="", version="  ") == ["plain", "react18", "react19", "vue"], "blank: no filter"
    by_id = {s.source_id: s for s in await catalog.sources()}
    assert (by_id["react18"].library, by_id["react18"].version) == ("React", "18.2")
    assert (by_id["vue"].library, by_id["vue"].version) == ("Vue", None)
    assert (by_id["plain"].library, by_id["plain"].version) == (None, None)
    with pytest.raises(InputError):
        await catalog.sources(library="x" * 201)
    items, total = await catalog.source_page(page=2, per_page=3)
    assert total == 4 and len(items) == 1
