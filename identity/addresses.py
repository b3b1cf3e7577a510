"""Email addresses: the one canonical form used for every lookup, throttle key and uniqueness check.

Every spelling that reaches the same mailbox must be the same account, or an attacker gets many
accounts (and many per-email allowances) for one mailbox, and one spelling can squat another.
The canonical form is plain ASCII, so that every database folds it alike (PostgreSQL's UPPER()
and LOWER() disagree on U+017F long s and U+0131 dotless i; on ASCII they cannot), and it is what is stored: lookups
compare it by exact equality, and the unique index is on it.

- The domain goes through IDNA 2008 with the UTS #46 mapping (the `idna` package): fullwidth
  letters, an ideographic full stop, a soft hyphen or a zero-width space map to the plain
  domain; NFC and NFD spellings become one A-label (`xn--...`); case is folded. A trailing dot
  (the root) is dropped.
- The local part loses the characters that render as nothing (project.text.invisible_strip),
  is NFKC-normalised and lower-cased (long s is "s", a fullwidth "a" is "a"), and must then be
  an ASCII dot-atom: a non-ASCII local part (RFC 6531) is refused rather than guessed at, since
  we cannot know how the receiving server folds it (dotless i stays itself here, "I" under
  UPPER()); a quoted one ("victim"@) is its unquoted content, or refused when that is no
  dot-atom.
- Case: local parts are case-sensitive in RFC 5321, but no mail service we send to treats them
  so, and two accounts differing in case would be the squat this module exists to prevent.
  Provider-specific aliases (dots or "+tags" at some providers) are left alone: that is the
  provider's rule, not the address's.
"""
import re
import unicodedata

import idna

from project.text import invisible_strip

MAX_LENGTH = 254  # RFC 5321 path limit, minus the angle brackets
# RFC 5322 dot-atom: the only local-part syntax we store (ASCII by construction).
_DOT_ATOM = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_QUOTED_PAIR = re.compile(r"\\(.)")


class EmailNotCanonical(ValueError):
    """The address cannot be brought to one canonical form; refuse it rather than guess."""


def _local_canonical(local: str) -> str:
    text = unicodedata.normalize("NFKC", invisible_strip(local))
    # lower(), not casefold(): full folding would turn a German "ß" into "ss", another mailbox;
    # the result must be ASCII anyway, and on ASCII the two agree.
    text = unicodedata.normalize("NFKC", text.lower())
    if len(text) >= 2 and text[0] == text[-1] == '"':
        # A quoted local part names the same mailbox as its unquoted content ("victim"@ is
        # victim@, RFC 5321 4.1.2), which Django's validator would accept as a second spelling.
        text = _QUOTED_PAIR.sub(r"\1", text[1:-1])
    if not _DOT_ATOM.fullmatch(text):
        raise EmailNotCanonical("the part before @ must be plain ASCII letters, digits and punctuation")
    return text


def _domain_canonical(domain: str) -> str:
    try:
        ascii_domain = idna.encode(domain, uts46=True, transitional=False, std3_rules=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise EmailNotCanonical("the domain is not a valid internationalised domain name") from exc
    # Not empty: idna refuses an empty label, so at least one is left after the trailing dot.
    return ascii_domain.lower().removesuffix(".")


def email_canonical(raw: str) -> str:
    """The canonical form of an address as typed by a user (every flow that takes an email calls this).

    Raises EmailNotCanonical when the address has no single canonical form (no @, a non-ASCII
    local part, a domain that IDNA 2008 refuses). The result is not otherwise validated: the
    callers' EmailValidator checks its syntax.
    """
    local, sep, domain = unicodedata.normalize("NFKC", raw).strip().rpartition("@")
    if not sep or not local or not domain:
        raise EmailNotCanonical("an address needs a part before and after @")
    address = f"{_local_canonical(local)}@{_domain_canonical(domain)}"
    if len(address) > MAX_LENGTH:
        raise EmailNotCanonical(f"an address has at most {MAX_LENGTH} characters")
    return address


def email_canonical_or_none(raw: str) -> str | None:
    """email_canonical, or None for an address that has no canonical form (nobody's address)."""
    try:
        return email_canonical(raw)
    except EmailNotCanonical:
        return None
