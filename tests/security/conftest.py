"""Fixtures of the security sweep."""
import pytest

from tests.security.accounts import Account, account_create


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "security: the security sweep (authorization matrix, deploy checks, leaks)")


@pytest.fixture
def account(db) -> Account:
    """A verified user with a live token (from POST /api/login/)."""
    return account_create()
