"""Pure pieces of the crawler: URL canonicalization, the SSRF guard's address rules, sitemap/llms parsing."""

from __future__ import annotations

import gzip

import pytest

from ragserver.config import Settings
from ragserver.crawl.discover import inflate_capped, markdown_links, split_llms_full
from ragserver.crawl.fetch import SkippedPage
from ragserver.crawl.guard import Guard, GuardedResolver, RefusedAddress
from ragserver.crawl.request import MAX_DEPTH_LIMIT, MAX_PAGES_LIMIT, CrawlRequest
from ragserver.crawl.scope import Scope
from ragserver.crawl.urls import canonicalize, url_kind
from ragserver.errors import InputError, TargetRefused


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Docs.Example.com:80/a/b.html#frag", "http://docs.example.com/a/b.html"),
        ("https://example.com:443/guide/", "https://example.com/guide"),
        ("https://example.com/guide/index.html", "https://example.com/guide"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/index.html", "https://example.com/"),
        ("https://example.com/p?b=2&a=1&utm_source=x&fbclid=y", "https://example.com/p?a=1&b=2"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("mailto:someone@example.com", None),
        ("javascript:alert(1)", None),
        ("ftp://example.com/file", None),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_canonicalize(url: str, expected: str | None) -> None:
    assert canonicalize(url) == expected


def test_canonicalize_resolves_relative_links() -> None:
    assert canonicalize("../b.html#x", base="https://example.com/docs/a/page.html") == "https://example.com/docs/b.html"


def test_url_kind_and_scope() -> None:
    assert url_kind("https://x.org/sitemap_index.xml") == "sitemap"
    assert url_kind("https://x.org/sitemap.xml.gz") == "sitemap"
    assert url_kind("https://x.org/llms-full.txt") == "llms-full"
    assert url_kind("https://x.org/llms.txt") == "llms"
    assert url_kind("https://x.org/README.md") == "text"
    assert url_kind("https://x.org/docs/") == "page"
    scope = Scope("https://www.x.org/docs/", exclude=["*/changelog*"])
    assert scope.allows("https://x.org/docs/a") and scope.allows("http://www.x.org/other")
    assert not scope.allows("https://y.org/docs/a")
    assert not scope.allows("https://x.org/logo.png")
    assert not scope.allows("https://x.org/changelog.html")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "private or reserved"),
        ("0.0.0.0", "private or reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 to 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 to 169.254.169.254
        ("64:ff9b::10.0.0.1", "private"),
    ],
)
def test_guard_refuses_non_public_addresses(address: str, reason: str) -> None:
    refusal = Guard(Settings()).address_refusal(address)
    assert refusal is not None and reason in refusal


def test_guard_allows_public_addresses_and_the_settings_lift_it() -> None:
    assert Guard(Settings()).address_refusal("93.184.216.34") is None
    assert Guard(Settings()).address_refusal("2606:4700::1111") is None
    assert Guard(Settings()).address_refusal("64:ff9b::93.184.216.34") is None  # NAT64 to a public host
    assert Guard(Settings(crawl_allow_private=True)).address_refusal("127.0.0.1") is None
    allow = Guard(Settings(crawl_allowed_hosts="10.0.0.0/8, intranet.local"))
    assert allow.address_refusal("10.9.9.9") is None and allow.address_refusal("192.168.0.1") is not None
    assert allow.host_exempt("intranet.local") and not allow.host_exempt("other.local")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http:///nohost", "no host"),
    ],
)
async def test_check_url_refuses(url: str, message: str) -> None:
    with pytest.raises(TargetRefused, match=message) as caught:
        await Guard(Settings()).check_url(url)
    assert caught.value.status_code == 400


async def test_resolver_refuses_at_connect_time() -> None:
    """The second layer: even a name that passed an earlier check cannot connect to a refused address."""
    resolver = GuardedResolver(Guard(Settings()))
    with pytest.raises(RefusedAddress):
        await resolver.resolve("localhost", 80)
    allowed = GuardedResolver(Guard(Settings(crawl_allowed_hosts="localhost")))
    assert await allowed.resolve("localhost", 80)


def test_gzip_bomb_is_capped() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(SkippedPage, match="expands beyond"):
        inflate_capped(bomb, 1_000_000)
    assert inflate_capped(gzip.compress(b"<urlset/>"), 1_000) == b"<urlset/>"


def test_llms_full_sections_and_markdown_links() -> None:
    text = "# A\nSource: https://x.org/a\n\nalpha\n\n# B\n\n```\n# comment\n```\n"
    docs = list(split_llms_full("https://x.org/llms-full.txt", text))
    assert [(d.url, d.title) for d in docs] == [
        ("https://x.org/a", "A"),
        ("https://x.org/llms-full.txt#section-2", "B"),
    ]
    assert "# comment" in docs[1].markdown
    assert markdown_links('- [A](/a.html): x\n- [B](<https://x.org/b> "t")') == ["/a.html", "https://x.org/b"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"url": "   "}, "url"),
        ({"url": "https://example.org", "max_depth": MAX_DEPTH_LIMIT + 1}, "max_depth"),
        ({"url": "https://example.org", "max_pages": MAX_PAGES_LIMIT + 1}, "max_pages"),
        ({"url": "https://example.org", "include_patterns": [""]}, "include_patterns.0"),
    ],
)
def test_a_bad_crawl_request_outside_the_api_is_a_400_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InputError) as caught:
        CrawlRequest.checked(**fields)
    assert caught.value.status_code == 400 and f"{named}:" in caught.value.message


def test_crawl_request_options_repeat_the_crawl() -> None:
    """What a source keeps in its metadata builds the same request again, labels aside."""
    request = CrawlRequest.checked(
        url="  https://example.org/docs  ", tags=["t"], max_pages=7, exclude_patterns=["*/old/*"]
    )
    assert request.url == "https://example.org/docs"
    options = request.options()
    assert "tags" not in options and "knowledge_type" not in options
    assert CrawlRequest.checked(**options, tags=["t"]) == request
