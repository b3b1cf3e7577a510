"""identity.selectors: the token lookup every authenticated request runs (one raw statement),
and the preferences read by the consumer."""
import uuid

import pytest
from django.db import connection

from identity import selectors, services

pytestmark = pytest.mark.django_db


def test_usable_token_comes_with_its_user_in_one_statement(verified_user, issued_token,
                                                           django_assert_num_queries) -> None:
    with django_assert_num_queries(1):
        token = selectors.auth_token_get_usable(raw=issued_token.raw)
        user = token.user
    assert token.pk == issued_token.token.pk and token.key_hash == issued_token.token.key_hash
    assert token.expires_at == issued_token.token.expires_at and token.revoked_at is None
    assert user.pk == verified_user.pk and user.uid == verified_user.uid and user.email == verified_user.email
    assert user.check_password("a-long-passphrase-42")


def test_revoked_expired_unknown_and_inactive_are_none(verified_user, unusable_tokens) -> None:
    for raw in unusable_tokens.values():
        assert selectors.auth_token_get_usable(raw=raw) is None, raw
    live = services.auth_token_issue(user=verified_user)
    assert selectors.auth_token_get_usable(raw=live.raw) is not None
    verified_user.is_active = False
    verified_user.save()
    assert selectors.auth_token_get_usable(raw=live.raw) is None


def test_a_column_the_model_does_not_know_is_tolerated(verified_user) -> None:
    # Another change may add columns to the table before this code knows them (rolled back with the test).
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE identity_authtoken ADD COLUMN bench_extra varchar(20) DEFAULT 'x' NOT NULL")
    issued = services.auth_token_issue(user=verified_user)
    assert selectors.auth_token_get_usable(raw=issued.raw).pk == issued.token.pk


def test_selector_for_the_consumer(verified_user) -> None:
    assert selectors.user_preferences_get_by_uid(uid=verified_user.uid) == selectors.PreferencesState({}, 0, [])
    services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    services.user_preferences_update(user=verified_user, preferences={"dietary": None})
    state = selectors.user_preferences_get_by_uid(uid=verified_user.uid)
    assert state == selectors.PreferencesState({}, 2, ["dietary"])
    assert selectors.user_preferences_get_by_uid(uid=uuid.uuid4()) is None
