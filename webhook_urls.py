"""The SSRF guard for webhook URLs: a subscriber must not make the server call itself, its
network or a cloud metadata endpoint (169.254.169.254).

`check_shape` is cheap and synchronous (for validating input); `check_destination` also
resolves the host and refuses it if any address it resolves to is not public. The caller
decides when the guard applies. Resolving here and connecting later leaves a window for DNS
rebinding: a sender that must close it connects to the addresses this check approved.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64's well-known prefix: on an IPv6-only network 64:ff9b::a.b.c.d reaches a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """A webhook URL the server will not call; the message says why, for the subscriber."""


def _host_and_port(url: str) -> tuple[str, int]:
    """The host and port `url` would connect to, once its shape is acceptable."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"the URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines, and parsers disagree on "\" (browsers and
    # some clients read it as "/"): refusing them keeps the host we check the host we call.
    if any(c <= " " or c in "\x7f\\" for c in url):
        raise UnsafeURL("the URL may not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:  # a bad port or an unbalanced "[" around an IPv6 host
        raise UnsafeURL(f"the URL is malformed: {error}") from error
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeURL("the URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise UnsafeURL("the URL may not contain a user name or password")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if port == 0:
        raise UnsafeURL("the URL's port must be between 1 and 65535")
    try:
        # The sender's own parser, both ways (IDNA 2008): the host is looked up as the sender
        # will name it, and one it cannot encode or decode is refused here, not at each send.
        parsed = httpx.URL(url)
        host, _ = parsed.raw_host.decode("ascii"), parsed.host
    except (httpx.InvalidURL, ValueError) as error:
        raise UnsafeURL(f"the URL is malformed: {error}") from error
    return host, port or DEFAULT_PORTS[scheme]


def check_shape(url: str) -> None:
    """Raise UnsafeURL unless `url` is an http(s) URL with a host, no user name or password,
    at most 2000 characters long."""
    _host_and_port(url)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that traffic to `address` ends up at, if the network translates it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_allowed(address: IPAddress) -> bool:
    """Whether a webhook may be sent to `address`: only to the public internet."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:  # deprecated fec0::/10, still private where it is used
            return False
        address = _embedded_ipv4(address) or address
    # is_global alone would do on the newest Pythons; the explicit list keeps older ones
    # (which call 224.0.1.1, ::7f00:1 or 192.0.0.8 global) from letting these through.
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, as text (tests replace this to fake DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_destination(url: str, *, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> str:
    """Raise UnsafeURL unless `url` has an acceptable shape and its host resolves, within
    `timeout` seconds, only to public addresses; return the first of them, for the caller to
    connect to (a second lookup could answer differently). A literal IP address is not
    looked up."""
    host, port = _host_and_port(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not is_allowed(literal):
            raise UnsafeURL(f"{host} is not a public address")
        return host
    try:
        addresses = await asyncio.wait_for(resolve(host, port), timeout)
    except (OSError, UnicodeError, TimeoutError) as error:
        # OSError: no such name or no DNS; UnicodeError: a name IDNA cannot encode.
        raise UnsafeURL(f"could not resolve {host}") from error
    if not addresses:
        raise UnsafeURL(f"could not resolve {host}")
    for text in addresses:
        try:
            allowed = is_allowed(ipaddress.ip_address(text))
        except ValueError:
            allowed = False  # an address we cannot read is not one we can vouch for
        if not allowed:
            raise UnsafeURL(f"{host} resolves to {text}, which is not a public address")
    return addresses[0]
