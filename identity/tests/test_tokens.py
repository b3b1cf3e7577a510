"""identity.tokens: the link and session tokens (the endpoints that take them: test_views.py and
test_account_views.py)."""
import time
import uuid
from unittest import mock

import pytest
from django.core import signing

from identity import tokens

UID = uuid.UUID("abcdef12-3456-4789-abcd-ef0123456789")


def test_reset_timeout_follows_the_setting(settings) -> None:
    assert int(settings.PASSWORD_RESET_TTL.total_seconds()) == settings.PASSWORD_RESET_TIMEOUT


def test_an_auth_token_is_random_and_only_its_hash_is_kept() -> None:
    raw = tokens.auth_token_generate()
    assert len(raw) == 43 and raw != tokens.auth_token_generate()
    assert tokens.auth_token_hash(raw) == tokens.auth_token_hash(raw)
    assert len(tokens.auth_token_hash(raw)) == 64 and raw not in tokens.auth_token_hash(raw)
    tokens.auth_token_hash("\ud800")  # a lone surrogate (from a crafted header) hashes, never raises


def test_a_verification_token_names_its_uid_and_holds_for_its_address_only(settings) -> None:
    token = tokens.email_verification_token_make(uid=UID, email="ada@example.com")
    assert "ada" not in token
    assert tokens.email_verification_token_uid(token) == UID
    assert tokens.email_verification_token_check(token, email="ada@example.com")
    assert not tokens.email_verification_token_check(token, email="eve@example.com")
    later = time.time() + settings.EMAIL_VERIFICATION_TTL.total_seconds() + 5
    with mock.patch("django.core.signing.time.time", return_value=later):
        assert not tokens.email_verification_token_check(token, email="ada@example.com")


@pytest.mark.parametrize("token", ["", "no-colon", f"{UID.hex.upper()}:x:y", "zz:x:y", f"{UID}:x:y"])
def test_a_malformed_verification_token_names_nobody(token: str) -> None:
    assert tokens.email_verification_token_uid(token) is None
    assert not tokens.email_verification_token_check(token, email="ada@example.com")


@pytest.mark.parametrize(
    "token",
    ["", f"{UID.hex}", f"{UID.hex}.", f"{UID.hex}.abc", f"0x{UID.hex[2:]}.abc-0123456789abcdef0123",
     f"{UID.hex}.ABC-0123456789abcdef0123", f"{UID.hex}. abc-0123456789abcdef0123"],
)
def test_a_reset_token_of_another_shape_is_refused_before_any_lookup(token: str) -> None:
    assert tokens.password_reset_token_split(token) is None


def test_a_reset_token_splits_into_its_uid_and_djangos_token() -> None:
    assert tokens.password_reset_token_split(f"{UID.hex}.c5x2kq-0123456789abcdef0123") == (
        UID, "c5x2kq-0123456789abcdef0123"
    )


def test_an_email_change_token_gives_back_its_request_id_until_it_expires(settings) -> None:
    from datetime import timedelta

    token = tokens.email_change_token_make(request_id=42)
    assert tokens.email_change_token_read(token) == "42"
    settings.EMAIL_CHANGE_TTL = timedelta(seconds=-1)
    assert tokens.email_change_token_read(token) is None


OTHER_FLOW_OR_SHAPE = {
    "empty": lambda: "",
    "garbage": lambda: "garbage",
    "another flow's salt": lambda: signing.dumps({"r": "42"}, salt="identity.email-verification"),
    "not an object": lambda: signing.dumps(["42"], salt="identity.email-change"),
    "id not a string": lambda: signing.dumps({"r": 42}, salt="identity.email-change"),
}


@pytest.mark.parametrize("make", OTHER_FLOW_OR_SHAPE.values(), ids=OTHER_FLOW_OR_SHAPE)
def test_an_email_change_token_of_another_flow_or_shape_reads_as_none(make) -> None:
    assert tokens.email_change_token_read(make()) is None
