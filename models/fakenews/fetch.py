"""Fetching user-supplied URLs safely: public addresses only, pinned, bounded in time and size.

Every name is resolved once, every answer must be a public address, and the connection goes to
the addresses that were checked (the resolver aiohttp uses *is* the check). Redirects are
followed by hand, each hop checked again. A total deadline covers everything; the body is
counted after decompression; only allowed content types are read; no cookies, credentials,
proxies or netrc. ``allow`` (tests only) names `host` or `host:port` entries exempt from the
address check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from greenroom.errors import UserError

MAX_URL = 2048
MAX_REDIRECTS = 5
PORTS = {"http": 80, "https": 443}
USER_AGENT = "Greenroom/0.1 (link check; +https://pypi.org/project/greenroom)"
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.platformequinix.com",
    }
)
ARTICLE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CGNAT = ipaddress.ip_network("100.64.0.0/10")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
COMPATIBLE = ipaddress.ip_network("::/96")


class FetchError(UserError):
    """A URL that was not fetched, and why, in words for the chat."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    charset: str | None
    body: bytes


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside v4-mapped, v4-compatible, 6to4, Teredo and NAT64 forms."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in NAT64 or (ip in COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why an address may not be fetched from (None: it is public)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return "NAT64 local-use"
        if (inner := _embedded_ipv4(ip)) is not None:
            reason = refusal(inner)
            return f"{reason} (embedded in IPv6)" if reason else None
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("carrier-grade NAT", isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT),
        ("this-network", isinstance(ip, ipaddress.IPv4Address) and ip in THIS_NETWORK),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _allowed(allow: frozenset[str], host: str, port: int) -> bool:
    return host in allow or f"{host}:{port}" in allow


class CheckedResolver(AbstractResolver):
    """Resolves once and refuses a name if any of its addresses is not public."""

    def __init__(self, allow: frozenset[str]) -> None:
        self.allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") in METADATA_NAMES:
            raise FetchError(f"{host} is a cloud metadata name")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except socket.gaierror:
            raise FetchError(f"{host} does not resolve") from None
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if not _allowed(self.allow, host, port) and (reason := refusal(ip)):
                raise FetchError(f"{host} resolves to {ip}, a {reason} address")
            results.append(
                ResolveResult(
                    hostname=host, host=str(ip), port=port, family=fam, proto=proto, flags=socket.AI_NUMERICHOST
                )
            )
        if not results:
            raise FetchError(f"{host} does not resolve")
        return results

    async def close(self) -> None:
        return None


def check_url(raw: str, allow: frozenset[str] = frozenset()) -> URL:
    """Normalise and vet a URL before any connection: scheme, credentials, length, port, literal IPs."""
    raw = raw.strip()
    if len(raw) > MAX_URL:
        raise FetchError(f"the link is {len(raw)} characters long (at most {MAX_URL})")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        url = URL(raw).with_fragment(None)
    except ValueError:
        raise FetchError("that is not a valid link") from None
    if url.scheme not in PORTS:
        raise FetchError(f"only http and https links can be read (not {url.scheme or 'this'})")
    if url.user is not None or url.password is not None:
        raise FetchError("links with a user name or password are not fetched")
    host = (url.host or "").lower()
    if not host:
        raise FetchError("the link has no host")
    port = url.port or PORTS[url.scheme]
    if _allowed(allow, host, port):
        return url
    ip = _literal_ip(host)
    if ip is not None and (reason := refusal(ip)):
        raise FetchError(f"{host} is a {reason} address" if str(ip) == host else f"{host} is {ip}, a {reason} address")
    if port != PORTS[url.scheme]:
        raise FetchError(f"only the standard ports are fetched ({url.scheme} on {PORTS[url.scheme]}, not {port})")
    return url  # a name is checked when it is resolved


def _literal_ip(host: str) -> IPAddress | None:
    """An IP address written as the host, including the legacy forms `2130706433` and `0177.0.0.1`."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and re.match(r"[0-9]", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class SafeFetcher:
    """GETs public URLs within ``deadline`` seconds and ``max_bytes`` decoded bytes."""

    def __init__(self, deadline: float = 10.0, max_bytes: int = 5_000_000, allow: Iterable[str] = ()) -> None:
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.allow = frozenset(a.lower() for a in allow)

    async def get(self, raw_url: str, content_types: tuple[str, ...] = ARTICLE_TYPES) -> Fetched:
        try:
            async with asyncio.timeout(self.deadline):
                return await self._get(raw_url, content_types)
        except TimeoutError:
            raise FetchError(f"the site did not answer within {self.deadline:g} s") from None
        except aiohttp.ClientError as e:
            raise FetchError(f"could not fetch the link ({type(e).__name__})") from None

    async def _get(self, raw_url: str, content_types: tuple[str, ...]) -> Fetched:
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(self.allow), use_dns_cache=False)
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept": ", ".join(content_types)},
        ) as session:
            url = check_url(raw_url, self.allow)
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"the site sent a redirect without a target ({response.status})")
                        url = check_url(str(url.join(URL(location))), self.allow)
                        continue
                    return await self._read(response, content_types)
            raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, response: aiohttp.ClientResponse, content_types: tuple[str, ...]) -> Fetched:
        if response.status >= 400:
            raise FetchError(f"the site answered {response.status} {response.reason or ''}".rstrip())
        kind = response.content_type.lower()
        if kind not in content_types:
            raise FetchError(f"the link is {kind or 'of no stated type'}, not a page I can read")
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            raise FetchError(f"the page is {declared:,} bytes, over the {self.max_bytes:,}-byte limit")
        body = bytearray()
        async for chunk in response.content.iter_chunked(65536):  # decoded bytes: gzip bombs stop here
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"the page is over the {self.max_bytes:,}-byte limit")
        return Fetched(str(response.url), kind, response.charset, bytes(body))
