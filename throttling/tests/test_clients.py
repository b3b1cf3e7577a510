import pytest
from django.test import RequestFactory

from throttling.clients import client_address


def address(remote: str, xff: str | None = None) -> str:
    meta = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return client_address(RequestFactory().get("/", **meta))


def test_without_trusted_proxies_the_forwarded_header_is_ignored(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 0
    assert address("203.0.113.5", "198.51.100.1") == "203.0.113.5"


@pytest.mark.parametrize(
    ("hops", "xff", "expected"),
    [
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own entry is ignored
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "198.51.100.1", "198.51.100.1"),  # a shorter chain: the outermost entry a proxy wrote
        (1, "6.6.6.6,198.51.100.1:4711", "198.51.100.1"),  # with a port
        (1, "[2001:db8::1]:443", "2001:db8::/64"),
        (1, "", "203.0.113.5"),
        (1, "x" * 5000, "203.0.113.5"),  # not an address: the peer
        (1, "6.6.6.6, unknown", "203.0.113.5"),
    ],
)
def test_behind_trusted_proxies_the_entry_the_outermost_wrote(settings, hops, xff, expected) -> None:
    settings.TRUSTED_PROXY_COUNT = hops
    assert address("203.0.113.5", xff) == expected


def test_ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 0
    assert address("2001:db8:1:2:aaaa::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:192.0.2.7") == "192.0.2.7"


def test_a_peer_that_is_not_an_address_is_used_as_is(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 0
    assert address("") == ""
    assert address("unix:/run/gunicorn.sock") == "unix:/run/gunicorn.sock"
