"""Which URLs a crawl visits (scope, include/exclude patterns) and what it sends (per-crawl headers).

The rules on URLs alone, then crawls of a real site on 127.0.0.1 whose requests (and their
headers) the site records. `localhost` reaches the same server under another host name, which is
how the host rules are seen at work; nothing else resolves to it here, so subdomains are checked
on URLs (`registrable_domain`, `Scope.same_site`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from support.site_fixtures import FixtureSite, Route, crawl, crawl_settings, docs_site, page, redirect

from ragserver.config import Settings
from ragserver.crawl.fetch import Fetcher
from ragserver.crawl.headers import parse_header_line
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.scope import BadPattern, Scope, compile_pattern, registrable_domain
from ragserver.domain import public_source_metadata
from ragserver.errors import InputError
from ragserver.logredact import SecretFilter, secrets_masked_in_logs

pytestmark = pytest.mark.timeout(60)

TOKEN = "Bearer s3cret-crawl-token"
DOCS_KEY = "docs-key-8d1f"


def test_globs_match_the_whole_url_and_regexes_search_it() -> None:
    glob = compile_pattern("*/api/*")
    assert glob.matches("https://x.org/docs/api/a.html") and not glob.matches("https://x.org/docs/apis.html")
    assert not compile_pattern("/docs/*").matches("https://x.org/docs/a")  # a glob must match all of it
    regex = compile_pattern(r"/\/v[0-9]+\//")
    assert regex.is_regex and regex.matches("https://x.org/docs/v2/a") and not regex.matches("https://x.org/vx/")
    assert not compile_pattern(r"/^https://x\.org/$/").matches("https://x.org/a")
    with pytest.raises(BadPattern, match=r"'/\(unclosed/' is not a valid regular expression"):
        compile_pattern("/(unclosed/")
    assert not compile_pattern("//").is_regex  # too short to hold a regex: a glob


def test_exclude_wins_over_include() -> None:
    scope = Scope("https://x.org/", include=["*/docs/*"], exclude=[r"/\/old\//"])
    assert scope.allows("https://x.org/docs/a")
    assert not scope.allows("https://x.org/docs/old/a")
    assert not scope.allows("https://x.org/blog/a")


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("docs.example.com", "example.com"),
        ("api.v2.example.com", "example.com"),
        ("example.com", "example.com"),
        ("docs.example.co.uk", "example.co.uk"),
        ("www.example.com.au", "example.com.au"),
        ("docs.example.de", "example.de"),
        ("requests.readthedocs.io", "requests.readthedocs.io"),
        ("en.user.github.io", "user.github.io"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
    ],
)
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


def test_the_three_scopes() -> None:
    start = "https://docs.example.com/guide/intro.html"
    urls = {
        "folder": "https://docs.example.com/guide/setup",
        "folder itself": "https://docs.example.com/guide",
        "folder prefix": "https://docs.example.com/guide-old/a",
        "same host": "https://docs.example.com/blog/a",
        "www": "https://www.docs.example.com/guide/a",
        "subdomain": "https://api.example.com/ref",
        "apex": "http://example.com/",
        "other domain": "https://example.org/guide/a",
        "look-alike": "https://badexample.com/guide/a",
    }
    allowed = {
        name: sorted(label for label, url in urls.items() if Scope(start, scope=name).allows(url))
        for name in ("subpages", "hostname", "domain")
    }
    assert allowed["subpages"] == ["folder", "folder itself", "www"]
    assert allowed["hostname"] == ["folder", "folder itself", "folder prefix", "same host", "www"]
    assert allowed["domain"] == sorted(set(urls) - {"other domain", "look-alike"})
    assert Scope("https://x.org/docs/", scope="subpages").allows("https://x.org/docs/deep/a")
    assert Scope("https://x.org/", scope="subpages").allows("https://x.org/anything")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"include_patterns": ["/(/"]}, "include_patterns: Value error, '/(/' is not a valid regular expression"),
        ({"exclude_patterns": ["*.html", "/[z-a]/"]}, "'/[z-a]/' is not a valid regular expression"),
        ({"scope": "planet"}, "scope: Input should be 'subpages', 'hostname' or 'domain'"),
        (
            {"headers": {"X-Key": "a\r\nInjected: 1"}},
            "value of header 'X-Key' must be printable ASCII without CR or LF",
        ),
        ({"headers": {"X-Key": " "}}, "value of header 'X-Key'"),
        ({"headers": {"Host": "evil.example"}}, "header 'Host' is set by the crawler itself"),
        ({"headers": {"if-none-match": '"x"'}}, "header 'if-none-match' is set by the crawler itself"),
        ({"headers": {"Bad Name": "v"}}, "header #1 has no valid name"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "header 'x-a' is given twice"),
        ({"headers": {f"X-{i}": "v" for i in range(21)}}, "headers:"),
    ],
)
def test_bad_patterns_scopes_and_headers_are_refused_naming_them(fields: dict[str, object], words: str) -> None:
    with pytest.raises(InputError) as caught:
        CrawlRequest.checked(url="https://example.org", **fields)
    assert words in caught.value.message
    assert "Injected" not in caught.value.message and "evil.example" not in caught.value.message


def test_header_values_are_kept_for_a_refresh_and_masked_in_answers() -> None:
    request = CrawlRequest.checked(url="https://example.org", headers={"Authorization": TOKEN})
    options = request.options()
    assert options["headers"] == {"Authorization": TOKEN}
    assert CrawlRequest.checked(**options) == request
    shown = public_source_metadata({"crawl": options, "library": "x"})
    assert shown["crawl"]["headers"] == {"Authorization": "***"} and shown["library"] == "x"
    assert options["headers"] == {"Authorization": TOKEN}  # the stored options are not changed
    assert public_source_metadata({"filename": "a.md"}) == {"filename": "a.md"}


def test_header_lines_of_the_cli() -> None:
    assert parse_header_line("Authorization:  Bearer a:b ") == ("Authorization", "Bearer a:b")
    with pytest.raises(ValueError) as caught:
        parse_header_line("Bearer s3cret")
    assert "s3cret" not in str(caught.value)


def scoped_site() -> FixtureSite:
    """/docs/ links into its folder, to a look-alike folder, elsewhere on the host and to the host as `localhost`."""
    site = FixtureSite(
        {
            "/docs/a.html": page("A", "<p>page a</p>"),
            "/docs/v2/b.html": page("B", "<p>page b</p>"),
            "/docs-old/x.html": page("Old", "<p>old docs</p>"),
            "/blog/post.html": page("Post", "<p>a post</p>"),
            "/sitemap.xml": Route(
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                "<url><loc>{base}/docs/from-sitemap.html</loc></url><url><loc>{base}/blog/in-sitemap.html</loc></url>"
                "</urlset>",
                content_type="application/xml",
            ),
            "/docs/from-sitemap.html": page("From sitemap", "<p>listed</p>"),
            "/blog/in-sitemap.html": page("Blog in sitemap", "<p>listed too</p>"),
            "/llms.txt": Route("# Site\n\n- [Post](/blog/post.html)\n", content_type="text/plain"),
            "/elsewhere.html": page("Elsewhere", "<p>on the other host name</p>"),
        }
    )
    other_host = site.base.replace("127.0.0.1", "localhost")
    links = ["a.html", "v2/b.html", "../docs-old/x.html", "../blog/post.html", f"{other_host}/elsewhere.html"]
    site.set("/docs/", page("Docs", "<p>docs home</p>", links))
    return site


def hosts_asked(site: FixtureSite) -> set[str]:
    return {headers.get("Host", "").split(":")[0] for _, headers in site.requests}


@pytest.mark.parametrize(
    ("options", "stored"),
    [
        (
            {},
            [
                *["/blog/in-sitemap.html", "/blog/post.html", "/docs", "/docs-old/x.html", "/docs/a.html"],
                *["/docs/from-sitemap.html", "/docs/v2/b.html", "/llms.txt"],
            ],
        ),
        ({"scope": "subpages"}, ["/docs", "/docs/a.html", "/docs/from-sitemap.html", "/docs/v2/b.html"]),
        (
            {"include_patterns": ["*/docs/*"], "exclude_patterns": [r"/\/v2\//"]},
            ["/docs", "/docs/a.html", "/docs/from-sitemap.html"],
        ),
        (
            {"include_patterns": [r"/(post|in-sitemap)\.html$/"]},
            ["/blog/in-sitemap.html", "/blog/post.html", "/docs"],
        ),
    ],
)
async def test_scope_and_patterns_decide_what_is_fetched(
    tmp_path: Path, options: dict[str, object], stored: list[str]
) -> None:
    with scoped_site() as site:
        # link pages kept: which pages are stored is the scope's doing alone here
        docs, _ = await crawl(
            crawl_settings(tmp_path), site.url("/docs/"), max_depth=2, keep_link_pages=True, **options
        )
        assert sorted(d.url for d in docs) == [site.url(p) for p in stored]
        fetched = {path for path, _ in site.requests}
        unstored = {p for p in site.routes if p.endswith(".html")} - {p for p in stored}
        assert not unstored & fetched  # out of scope or filtered: never even requested
        assert hosts_asked(site) == {"127.0.0.1"}  # the link to the localhost name was never followed
        if options.get("scope") == "subpages":
            assert "/llms.txt" not in fetched  # an out-of-scope llms.txt is not probed either


async def test_the_start_url_is_never_filtered(tmp_path: Path) -> None:
    with scoped_site() as site:
        docs, _ = await crawl(
            crawl_settings(tmp_path), site.url("/docs/"), max_depth=1, exclude_patterns=["*"], keep_link_pages=True
        )
        assert [d.url for d in docs] == [site.url("/docs")]


async def test_headers_go_with_every_request_of_the_crawl_and_into_no_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with docs_site() as site:
        docs, _ = await crawl(
            crawl_settings(tmp_path),
            site.url("/"),
            max_depth=2,
            headers={"Authorization": TOKEN, "X-Docs-Key": DOCS_KEY},
        )
        assert docs
        paths = {path for path, _ in site.requests}
        assert {"/robots.txt", "/llms.txt", "/sitemap_index.xml", "/sitemap-extra.xml.gz", "/docs/intro.html"} <= paths
        for path, headers in site.requests:
            assert headers.get("Authorization") == TOKEN and headers.get("X-Docs-Key") == DOCS_KEY, path
    assert caplog.records  # the crawl did log (skips, failures, retries)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert TOKEN not in logged and DOCS_KEY not in logged and "s3cret" not in logged


async def test_headers_never_reach_another_host(tmp_path: Path) -> None:
    """robots.txt redirecting to the same server under the name `localhost`: that hop goes without them."""
    with FixtureSite(
        {"/": page("Home", "<p>home page</p>"), "/real-robots.txt": Route("", content_type="text/plain")}
    ) as site:
        site.set("/robots.txt", redirect(site.base.replace("127.0.0.1", "localhost") + "/real-robots.txt"))
        await crawl(crawl_settings(tmp_path), site.url("/"), max_depth=0, headers={"Authorization": TOKEN})
        by_host = {(path, headers["Host"].split(":")[0]): headers for path, headers in site.requests}
        assert by_host[("/robots.txt", "127.0.0.1")].get("Authorization") == TOKEN
        assert "Authorization" not in by_host[("/real-robots.txt", "localhost")]
        assert by_host[("/", "127.0.0.1")].get("Authorization") == TOKEN


def test_header_values_are_masked_in_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whoever logs a crawl's header value (a library, a careless message), the line shows *** instead."""
    settings: Settings = crawl_settings(tmp_path)
    caplog.set_level(logging.INFO)
    with secrets_masked_in_logs(settings):
        Fetcher(settings, headers={"X-Docs-Key": DOCS_KEY})
        logging.getLogger("some.library").info("sending X-Docs-Key: %s", DOCS_KEY)
        logging.getLogger("some.library").info(f"in the message itself: {DOCS_KEY}")
    assert DOCS_KEY not in caplog.text
    assert caplog.text.count("***") == 2


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("acme.gitbook.io", "acme.gitbook.io"),
        ("proj.readthedocs.org", "proj.readthedocs.org"),
        ("bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com"),
        ("docs.service.gouv.fr", "service.gouv.fr"),
    ],
)
def test_shared_hosting_suffixes_are_never_one_owners_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


def test_request_headers_go_to_the_start_host_only_and_long_urls_are_never_matched() -> None:
    scope = Scope("https://docs.example.com/", scope="domain", include=["/(a+)+$/"])
    assert scope.same_site("https://api.example.com/x") and not scope.same_host("https://api.example.com/x")
    assert scope.same_host("https://www.docs.example.com/y")
    assert not scope.allows("https://docs.example.com/" + "a" * 5000 + "!")


def test_masking_covers_argument_objects_mappings_and_tracebacks() -> None:
    secret = "hdr-secret-value-42"
    masker = SecretFilter([secret])
    records = [
        logging.LogRecord("t", logging.INFO, __file__, 1, "sent %s", ({"X-Token": secret},), None),
        logging.LogRecord("t", logging.INFO, __file__, 1, "sent %(h)s", None, None),
    ]
    records[1].args = {"h": {"X-Token": secret}}
    try:
        raise RuntimeError(f"refused {secret}")
    except RuntimeError:
        records.append(logging.LogRecord("t", logging.ERROR, __file__, 1, "failed %d", (3,), sys.exc_info()))
    formatter = logging.Formatter()
    for record in records:
        assert masker.filter(record)
        line = formatter.format(record)
        assert secret not in line and "***" in line, line
    assert formatter.format(records[2]).startswith("failed 3")
