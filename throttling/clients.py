"""The client address a request is counted against: never anything the client can choose."""
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address_parse(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    raw = raw.strip()
    if raw.startswith("[") and "]" in raw:  # [v6]:port
        raw = raw[1 : raw.index("]")]
    elif raw.count(":") == 1:  # v4:port
        raw = raw.partition(":")[0]
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        return None


def _throttle_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One IPv6 host usually holds a whole /64: counting single addresses would let it rotate freely.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(request: HttpRequest) -> str:
    """The peer address (REMOTE_ADDR), or, behind TRUSTED_PROXY_COUNT proxies, the address the outermost
    of them appended to X-Forwarded-For. Entries left of that one were written by the client and are
    ignored; with no trusted proxy (the default) the header is ignored entirely. IPv6 clients are
    counted per /64."""
    peer = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    address = None
    if hops > 0:
        forwarded = [entry for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
        if forwarded:
            address = _address_parse(forwarded[-min(hops, len(forwarded))])
    address = address or _address_parse(peer)
    return _throttle_key(address) if address is not None else peer
