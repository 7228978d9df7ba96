"""Custom request headers of one crawl (private docs: a token, a cookie): what may be sent, and to whom.

A header name must be an RFC 9110 token; a value visible ASCII, spaces and tabs (no CR, LF or
NUL, so nothing can be smuggled into the request). Headers that frame the request or that the
fetcher owns (Host, Content-Length, the conditional requests of a refresh, the User-Agent that
robots.txt rules are matched against) are refused. Values are secrets: error messages name the
header, never its value, and the crawler registers them with the log masking (logredact.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_HEADERS = 20
MAX_HEADER_NAME_CHARS = 100
MAX_HEADER_VALUE_CHARS = 8192

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
RESERVED_HEADERS = frozenset(
    {
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "expect",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "range",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)


def header_problem(position: int, name: str, value: str) -> str | None:
    """Why this header cannot be sent, or None when it can.

    A bad name is named by its position only: a mistyped line may have put the secret there.
    """
    if not TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME_CHARS:
        return (
            f"header #{position} has no valid name (a token of letters, digits and !#$%&'*+-.^_`|~, "
            f"at most {MAX_HEADER_NAME_CHARS} characters)"
        )
    if name.lower() in RESERVED_HEADERS:
        return f"header {name!r} is set by the crawler itself and cannot be given"
    if len(value) > MAX_HEADER_VALUE_CHARS:
        return f"the value of header {name!r} is longer than {MAX_HEADER_VALUE_CHARS} characters"
    if not FIELD_VALUE.fullmatch(value):
        return f"the value of header {name!r} must be printable ASCII without CR or LF (and not blank)"
    return None


def checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers when every one may be sent; ValueError naming the first that may not."""
    seen: set[str] = set()
    for position, (name, value) in enumerate(headers.items(), start=1):
        problem = header_problem(position, name, value)
        if problem is None and name.lower() in seen:
            problem = f"header {name!r} is given twice"
        if problem is not None:
            raise ValueError(problem)
        seen.add(name.lower())
    return dict(headers)


def parse_header_line(line: str) -> tuple[str, str]:
    """`Name: value` (the CLI's --header) as a pair; ValueError (not quoting the line) without a colon."""
    name, colon, value = line.partition(":")
    if not colon:
        raise ValueError("--header must look like 'Name: value'")
    return name.strip(), value.strip()
