"""The SSRF guard: URL shapes, and destinations by literal address and by name. Names are
the reserved `localhost` and `.invalid` or faked through `webhook_urls.resolve`: no test
needs the internet."""

import asyncio

import pytest

import webhook_urls
from webhook_urls import UnsafeURL, check_destination, check_shape


def destination(url: str, **kwargs: float) -> None:
    asyncio.run(check_destination(url, **kwargs))


@pytest.fixture
def fake_dns(monkeypatch):
    """Answers look-ups from a dict (name -> addresses) instead of DNS."""
    answers: dict[str, list[str]] = {}

    async def resolve(host: str, port: int) -> list[str]:
        assert port in (80, 443, 8443)
        return answers[host]

    monkeypatch.setattr(webhook_urls, "resolve", resolve)
    return answers


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://example.com",
        "HTTPS://Example.COM:8443/a/b?c=d#e",
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/hook",
        "https://example.com/" + "a" * (2000 - len("https://example.com/")),
    ],
)
def test_acceptable_shapes(url):
    check_shape(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("//example.com/hook", "http:// or https://"),
        ("", "http:// or https://"),
        ("https://user:pass@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("https://@example.com/", "user name or password"),
        ("https://example.com/" + "a" * 2000, "longer than 2000"),
        ("https:///hook", "no host"),
        ("https://:443/hook", "no host"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "malformed"),
        ("https://example.com:http/", "malformed"),
        ("https://[::1/", "malformed"),
        ("https://exa\tmple.com/", "spaces, control characters"),
        ("https://example.com/\nHost: evil", "spaces, control characters"),
        ("https://example.com /", "spaces, control characters"),
        ("https://127.0.0.1\\@example.com/", "backslashes"),
        # Hosts the sender's parser cannot encode (IDNA 2008): refused here, not at each send.
        ("https://\u2603.example.com/", "malformed: Invalid IDNA hostname"),
        ("https://\uff41.com/", "malformed: Invalid IDNA hostname"),  # a full-width a
        ("https://xn--zz.example/", "malformed: Invalid A-label"),
    ],
)
def test_unacceptable_shapes(url, reason):
    with pytest.raises(UnsafeURL, match=reason):
        check_shape(url)
    with pytest.raises(UnsafeURL, match=reason):  # the destination check starts with the shape
        destination(url)


def test_unsafe_url_is_a_value_error_with_a_message():
    with pytest.raises(ValueError, match=r"^the URL must start with http:// or https://$"):
        check_shape("ftp://example.com")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # loopback
        "127.255.255.254",
        "10.0.0.1",  # private
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",  # unspecified: Linux connects it to the local host
        "224.0.0.1",  # multicast
        "224.0.1.1",  # multicast that Python 3.11 calls global
        "240.0.0.1",  # reserved
        "255.255.255.255",  # broadcast
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "[::1]",  # loopback
        "[::]",  # unspecified
        "[fe80::1]",  # link-local
        "[fe80::1%25eth0]",  # link-local with a zone
        "[fc00::1]",  # unique local
        "[fd12:3456::1]",
        "[fec0::1]",  # site-local (deprecated), global to Python 3.11
        "[ff02::1]",  # multicast
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped 169.254.169.254, written in hex
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
        "[2002:7f00:1::1]",  # 6to4 around 127.0.0.1
        "[2002:a00:1::1]",  # 6to4 around 10.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 around 169.254.169.254
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
        "[2001:db8::1]",  # documentation
    ],
)
def test_literal_addresses_that_are_refused(host):
    url = f"https://{host}/hook"
    check_shape(url)
    with pytest.raises(UnsafeURL, match="is not a public address"):
        destination(url)


@pytest.mark.parametrize(
    "host",
    [
        "93.184.216.34",
        "1.1.1.1",
        "[2606:4700::1111]",
        "[2606:4700:4700::1111]:8443",
        "[::ffff:5db8:d822]",  # IPv4-mapped 93.184.216.34
        "[2002:5db8:d822::1]",  # 6to4 around 93.184.216.34
        "[64:ff9b::5db8:d822]",  # NAT64 around 93.184.216.34 (IPv6-only networks)
    ],
)
def test_public_literal_addresses_pass_without_dns(host, monkeypatch):
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address needs no look-up")

    monkeypatch.setattr(webhook_urls, "resolve", no_dns)
    destination(f"https://{host}/hook")


def test_localhost_is_refused():
    with pytest.raises(UnsafeURL, match=r"localhost resolves to (127\.0\.0\.1|::1), which is not"):
        destination("http://localhost:8000/hook")


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.0.0.1", "0"])
def test_numeric_spellings_of_local_addresses_are_refused(host):
    """ipaddress does not read these, but the resolver (inet_aton) does, and then refuses."""
    with pytest.raises(UnsafeURL, match=r"resolves to (127\.0\.0\.1|0\.0\.0\.0), which"):
        destination(f"http://{host}/hook")


def test_an_unresolvable_name_is_refused():
    with pytest.raises(UnsafeURL, match=r"^could not resolve no-such-host\.invalid$"):
        destination("https://no-such-host.invalid/hook", timeout=5)


def test_a_name_idna_cannot_encode_is_refused():
    with pytest.raises(UnsafeURL, match="could not resolve"):
        destination(f"https://{'a' * 64}.example/hook")


def test_a_name_is_looked_up_as_the_sender_will_name_it(fake_dns):
    fake_dns["xn--exmple-cua.com"] = ["93.184.216.34"]  # IDNA 2008, as httpx encodes it
    assert asyncio.run(check_destination("https://ex\u00e4mple.com/")) == "93.184.216.34"


def test_a_name_resolving_only_to_public_addresses_passes(fake_dns):
    fake_dns["hooks.example"] = ["93.184.216.34", "2606:4700::1111"]
    destination("https://hooks.example/in")


def test_one_private_address_among_public_ones_is_enough_to_refuse(fake_dns):
    fake_dns["mixed.example"] = ["93.184.216.34", "10.0.0.7", "2606:4700::1111"]
    with pytest.raises(UnsafeURL, match=r"^mixed\.example resolves to 10\.0\.0\.7, which is"):
        destination("https://mixed.example/in")


@pytest.mark.parametrize("answer", [[], ["not-an-address"]])
def test_an_empty_or_unreadable_answer_is_refused(fake_dns, answer):
    fake_dns["odd.example"] = answer
    with pytest.raises(UnsafeURL, match=r"odd\.example"):
        destination("http://odd.example/in")


def test_the_port_comes_from_the_url_or_the_scheme(monkeypatch):
    asked: list[int] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(port)
        return ["93.184.216.34"]

    monkeypatch.setattr(webhook_urls, "resolve", resolve)
    destination("http://a.example/")
    destination("https://a.example/")
    destination("https://a.example:8443/")
    assert asked == [80, 443, 8443]


def test_a_slow_resolution_is_cut_short(monkeypatch):
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["93.184.216.34"]

    monkeypatch.setattr(webhook_urls, "resolve", slow)
    with pytest.raises(UnsafeURL, match=r"^could not resolve slow\.example$"):
        destination("https://slow.example/", timeout=0.05)


def test_resolve_asks_the_system_resolver():
    addresses = asyncio.run(webhook_urls.resolve("localhost", 80))
    assert set(addresses) <= {"127.0.0.1", "::1"}
    assert addresses
