import pytest

from identity.devices import UNKNOWN_DEVICE, client_info, device_label, network_of

FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX_UBUNTU, "Firefox on Ubuntu"),
        (SAFARI_IPHONE, "Mobile Safari on iOS"),
        ("curl/8.4.0", "curl"),
        ("", UNKNOWN_DEVICE),
        ("\x00\x01", UNKNOWN_DEVICE),
    ],
)
def test_device_label(user_agent: str, label: str) -> None:
    assert device_label(user_agent) == label


def test_a_browser_update_is_the_same_device() -> None:
    assert device_label(FIREFOX_UBUNTU) == device_label(FIREFOX_UBUNTU.replace("120.0", "121.0"))


def test_the_label_can_never_carry_a_link() -> None:
    """The label goes into the new-device mail, and the User-Agent is the client's to choose."""
    for user_agent in ("Mozilla/5.0 (compatible; Visit-evil.example/login-bot/1.0)", "https://evil.example/x"):
        label = device_label(user_agent)
        assert "." not in label and "/" not in label and ":" not in label


def test_a_huge_user_agent_is_cut_before_parsing() -> None:
    assert len(device_label("A" * 100_000)) <= 100


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("2001:db8:1:2::/64", "2001:db8:1::/48"),
        ("", ""),
        ("not-an-address", ""),
    ],
)
def test_network_is_the_coarse_prefix_never_the_address(address: str, network: str) -> None:
    assert network_of(address) == network


def test_client_info() -> None:
    info = client_info(user_agent=FIREFOX_UBUNTU, address="203.0.113.77")
    assert (info.device_label, info.network) == ("Firefox on Ubuntu", "203.0.113.0/24")
