"""identity.addresses: the canonical form's own rules. Every spelling of one mailbox and every
address refused for having no canonical form: tests/security/test_email_canonical.py."""
import pytest

from identity.addresses import MAX_LENGTH, EmailNotCanonical, email_canonical, email_canonical_or_none

# A domain of three non-ASCII labels: 70 characters as typed, 88 as the A-labels that are stored.
IDN_DOMAIN = ".".join(["\u00fc" * 20] * 3) + ".example"


@pytest.mark.parametrize("raw", ["ada.example.com", "@example.com", "ada@", "  @  "])
def test_an_address_needs_a_part_before_and_after_the_at_sign(raw) -> None:
    # The message is what the admin's user form shows (User.clean).
    with pytest.raises(EmailNotCanonical, match="a part before and after @"):
        email_canonical(raw)


@pytest.mark.parametrize("raw", ["ada@.", "ada@..", "ada@example..com", "ada@\u3002"])
def test_a_domain_of_empty_labels_is_refused(raw) -> None:
    with pytest.raises(EmailNotCanonical, match="not a valid internationalised domain name"):
        email_canonical(raw)


@pytest.mark.parametrize("address", ["ada+kairos@example.com", "a.da@example.com"])
def test_provider_aliases_stay_their_own_address(address) -> None:
    """Dots and +tags are one mailbox only at some providers: folding them is not ours to do."""
    assert email_canonical(address) == address


def test_the_length_limit_is_on_the_stored_form() -> None:
    ascii_limit = "a" * (MAX_LENGTH - len("@example.com")) + "@example.com"
    assert email_canonical(ascii_limit) == ascii_limit
    with pytest.raises(EmailNotCanonical):
        email_canonical("a" + ascii_limit)
    grows = "a" * 170 + "@" + IDN_DOMAIN
    assert len(grows) <= MAX_LENGTH  # short enough as typed, too long once the domain is A-labels
    with pytest.raises(EmailNotCanonical):
        email_canonical(grows)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ada@Example.COM ", "ada@example.com"),
        ("chef@B\u00fccher.example", "chef@xn--bcher-kva.example"),
        ("ada", None),
        ("m\u00fcller@example.com", None),
        ("ada@-example.com", None),
    ],
)
def test_or_none_is_none_exactly_where_there_is_no_canonical_form(raw, expected) -> None:
    assert email_canonical_or_none(raw) == expected
