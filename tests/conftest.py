"""Fixtures shared by the suites under tests/ (fuzz, security, e2e, ...)."""
import pytest

from tests.security.accounts import Account, account_create


@pytest.fixture
def account(db) -> Account:
    """A verified user with a live token (from POST /api/login/)."""
    return account_create()
