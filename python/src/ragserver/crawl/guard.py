"""SSRF guard: the crawler never reaches addresses a server should not reach on a user's behalf.

A crawl target comes from an API caller, so by default every address that is not globally
routable (loopback, private, link-local incl. cloud metadata 169.254.169.254, shared/CGNAT,
multicast, reserved, and the IPv6 forms that carry such an IPv4 address: mapped ::ffff:a.b.c.d,
6to4 2002::/16 and NAT64 64:ff9b::/96) is refused, and so is any scheme but
http(s). The check runs twice for every request hop, redirects included: once before the request
(`check_url`, which resolves the name and raises TargetRefused with a clear message), and again
inside the connection itself (`GuardedResolver`, the resolver of the HTTP client), so a DNS answer
that changes between the two (rebinding) cannot slip through. IP literals skip aiohttp's resolver,
which is why `check_url` checks them itself. CRAWL_ALLOW_PRIVATE=true lifts the guard; hosts or
networks in CRAWL_ALLOWED_HOSTS are exempt from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from ragserver.config import Settings
from ragserver.errors import TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Named explicitly so the refusal message can say what was hit; all are non-global anyway.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
ALLOWED_SCHEMES = ("http", "https")
# RFC 6052 well-known NAT64 prefix: a gateway forwards 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


class Guard:
    """Decides whether a URL or an address may be fetched under the current settings."""

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.crawl_allow_private
        self.allowed_hosts: set[str] = set()
        self.allowed_networks: list[IPNetwork] = []
        for item in (part.strip().lower() for part in settings.crawl_allowed_hosts.split(",")):
            if not item:
                continue
            try:
                self.allowed_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allowed_hosts.add(item.rstrip("."))

    def host_exempt(self, host: str) -> bool:
        """True when the guard does not apply to this host name at all."""
        return self.allow_private or host.lower().rstrip(".") in self.allowed_hosts

    def address_refusal(self, address: str) -> str | None:
        """Why this IP may not be contacted, or None when it may."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self.allow_private or any(ip in net for net in self.allowed_networks):
            return None
        carried = embedded_ipv4(ip)
        if carried is not None:
            return self.address_refusal(str(carried))
        if ip in METADATA_ADDRESSES:
            return f"{ip} is a cloud metadata address"
        if ip.is_loopback:
            return f"{ip} is a loopback address"
        if ip.is_link_local:
            return f"{ip} is a link-local address"
        if ip.is_multicast:
            return f"{ip} is a multicast address"
        if ip.is_private or not ip.is_global or ip.is_unspecified:
            return f"{ip} is a private or reserved address"
        return None

    async def check_url(self, url: str) -> None:
        """Raise TargetRefused unless `url` is http(s) and every address its host resolves to is allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise TargetRefused(f"not a valid URL: {url!r}") from exc
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise TargetRefused(f"only http and https URLs can be crawled, not {parts.scheme or 'no scheme'!r}")
        host = parts.hostname
        if not host:
            raise TargetRefused(f"URL has no host: {url!r}")
        if self.host_exempt(host):
            return
        for address in await resolve(host, port):
            reason = self.address_refusal(address)
            if reason:
                raise TargetRefused(
                    f"refused to crawl {host}: {reason} (set CRAWL_ALLOW_PRIVATE=true or CRAWL_ALLOWED_HOSTS)",
                    details={"url": url},
                )


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4 or NAT64), else None."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself); TargetRefused when none."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    return sorted({str(info[4][0]) for info in infos})


class RefusedAddress(OSError):
    """Raised inside the HTTP client's resolver; the fetcher turns it back into TargetRefused."""


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses at connect time (the DNS-rebinding defence)."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._guard.host_exempt(host):
            return results
        allowed = [r for r in results if self._guard.address_refusal(r["host"]) is None]
        if not allowed:
            raise RefusedAddress(f"refused to connect to {host}: it resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
