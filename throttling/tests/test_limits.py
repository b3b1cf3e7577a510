import pytest

from throttling.limits import Limit, limits_hit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rates(settings) -> None:
    settings.THROTTLE_RATES = {"login": "2/min", "login_email": "1/5min"}


def test_allows_up_to_the_limit_then_reports_the_time_to_the_window_end(throttle_store, throttle_clock) -> None:
    throttle_clock.advance(15)
    assert limits_hit([Limit("login", "a")]) is None
    assert limits_hit([Limit("login", "a")]) is None
    assert limits_hit([Limit("login", "a")]) == 45
    assert limits_hit([Limit("login", "b")]) is None  # another identity, another count
    throttle_clock.advance(45)
    assert limits_hit([Limit("login", "a")]) is None  # a new window


def test_stops_at_the_first_refusal_without_counting_the_rest(throttle_store) -> None:
    both = [Limit("login", "a"), Limit("login_email", "e")]
    assert limits_hit(both) is None
    assert limits_hit([Limit("login", "a")]) is None
    assert limits_hit(both) == 60  # refused per address: the email is not charged
    assert limits_hit([Limit("login", "z"), Limit("login_email", "e")]) == 300  # its one was used by the first


def test_an_identity_of_any_length_or_text_is_counted(throttle_store) -> None:
    huge = "\ud800" + "x" * 100_000  # a lone surrogate, and far past any column or key size
    assert limits_hit([Limit("login", huge)]) is None
    assert limits_hit([Limit("login", huge)]) is None
    assert limits_hit([Limit("login", huge)]) is not None


def test_nothing_is_counted_when_throttling_is_off(throttle_store, settings) -> None:
    settings.THROTTLING_ENABLED = False
    for _ in range(5):
        assert limits_hit([Limit("login", "a")]) is None


def test_stored_keys_cannot_be_matched_against_a_list_of_emails(throttle_store, settings) -> None:
    import hashlib

    from throttling.limits import _digest

    limits_hit([Limit("login_email", "ada@example.com")])
    digest = _digest("login_email", "ada@example.com", 300, 0)
    assert len(digest) == 64
    assert digest != hashlib.sha256(b"login_email\0ada@example.com\0300\x000").hexdigest()
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert _digest("login_email", "ada@example.com", 300, 0) != digest
