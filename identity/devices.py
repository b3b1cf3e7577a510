"""What a session records about the client that opened it: a device label and a coarse network.

Neither is a secret nor the full address: the label is "<browser> on <operating system>" from the
User-Agent (parsed by ua-parser, without versions, so a browser update is not a new device), and
the network is the client address cut to its /24 (IPv4) or /48 (IPv6) prefix.
"""
import ipaddress
import re
from dataclasses import dataclass

from ua_parser import parse

from throttling.clients import client_address

DEVICE_LABEL_MAX_LENGTH = 100
UNKNOWN_DEVICE = "Unknown device"
# Long enough for any real User-Agent; a longer header is cut before parsing (parsing is regex work).
USER_AGENT_MAX_LENGTH = 512
FAMILY_MAX_LENGTH = 40
# Families can echo User-Agent text (generic patterns capture it), and the label goes into the
# new-device mail: keep letters, digits, spaces and hyphens only, so it can never read as a link.
_UNSAFE = re.compile(r"[^A-Za-z0-9 \-]+")
IPV4_PREFIX = 24
IPV6_PREFIX = 48


@dataclass(frozen=True)
class ClientInfo:
    """The non-secret facts about a client kept on its session (AuthToken)."""

    device_label: str = ""
    network: str = ""


def device_label(user_agent: str) -> str:
    """"Firefox on Ubuntu", "Mobile Safari on iOS", "curl"; UNKNOWN_DEVICE when nothing is recognised."""
    parsed = parse(user_agent[:USER_AGENT_MAX_LENGTH])
    browser = _family(parsed.user_agent.family if parsed.user_agent else "")
    system = _family(parsed.os.family if parsed.os else "")
    label = f"{browser} on {system}" if browser and system else browser or system or UNKNOWN_DEVICE
    return label[:DEVICE_LABEL_MAX_LENGTH]


def _family(name: str) -> str:
    clean = " ".join(_UNSAFE.sub("", name).split())[:FAMILY_MAX_LENGTH].strip()
    return "" if clean == "Other" else clean


def network_of(address: str) -> str:
    """The /24 or /48 network of an address ("203.0.113.0/24"), or "" when it is not an address.
    A network ("2001:db8::/64", as a client-address function may give for IPv6) counts as its
    first address."""
    try:
        ip = ipaddress.ip_network(address.strip(), strict=False).network_address
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def client_info(*, user_agent: str, address: str) -> ClientInfo:
    return ClientInfo(device_label=device_label(user_agent), network=network_of(address))


def client_info_from_request(request) -> ClientInfo:
    """From the request's User-Agent and the client address the throttles use
    (throttling.clients.client_address: the peer, or behind TRUSTED_PROXY_COUNT proxies the address
    the outermost one saw; never an address the client wrote)."""
    user_agent = str(request.META.get("HTTP_USER_AGENT", ""))
    return client_info(user_agent=user_agent, address=client_address(request))
