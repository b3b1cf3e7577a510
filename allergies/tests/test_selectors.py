"""allergies.selectors: the allergy GET's one statement (token, user and profile)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from allergies import selectors, services
from identity import services as identity_services

pytestmark = pytest.mark.django_db


def test_token_user_and_profile_in_one_statement_equal_the_orm_read(verified_user, issued_token,
                                                                     django_assert_num_queries) -> None:
    services.allergy_profile_replace(user=verified_user, confirmed=["peanuts"], intolerances=["lactose"],
                                     severity={"peanuts": "severe", "lactose": "intolerance"})
    with django_assert_num_queries(1):
        token, state = selectors.allergy_profile_get_with_token(raw=issued_token.raw)
        assert token.user.pk == verified_user.pk
    assert token.pk == issued_token.token.pk
    assert state == selectors.allergy_profile_get(user=verified_user)
    assert state.revision == 1 and state.severity == {"peanuts": "severe", "lactose": "intolerance"}
    assert state.updated_at is not None and state.updated_at.tzinfo is not None


def test_user_without_a_profile_is_at_revision_zero(verified_user, issued_token) -> None:
    token, state = selectors.allergy_profile_get_with_token(raw=issued_token.raw)
    assert state == selectors.AllergyState.of(None) and token.user.pk == verified_user.pk


def test_same_rules_as_the_token_lookup(verified_user) -> None:
    revoked = identity_services.auth_token_issue(user=verified_user)
    identity_services.auth_token_revoke(token=revoked.token)
    expired = identity_services.auth_token_issue(user=verified_user)
    expired.token.expires_at = timezone.now() - timedelta(seconds=1)
    expired.token.save()
    live = identity_services.auth_token_issue(user=verified_user)
    assert selectors.allergy_profile_get_with_token(raw=revoked.raw) is None
    assert selectors.allergy_profile_get_with_token(raw=expired.raw) is None
    assert selectors.allergy_profile_get_with_token(raw="nope") is None
    assert selectors.allergy_profile_get_with_token(raw=live.raw) is not None
    verified_user.is_active = False
    verified_user.save()
    assert selectors.allergy_profile_get_with_token(raw=live.raw) is None


@pytest.mark.django_db(transaction=True)
def test_locked_read_equals_the_orm_read_and_is_none_without_a_profile(verified_user) -> None:
    from django.db import transaction

    from allergies.models import AllergyProfile

    with transaction.atomic():
        assert selectors.allergy_profile_get_for_update(user=verified_user) is None
    services.allergy_profile_replace(user=verified_user, confirmed=["peanuts"], intolerances=[],
                                     severity={"peanuts": "severe"})
    with transaction.atomic():
        locked = selectors.allergy_profile_get_for_update(user=verified_user)
    orm = AllergyProfile.objects.get(user=verified_user)
    assert [getattr(locked, f.attname) for f in AllergyProfile._meta.concrete_fields] == [
        getattr(orm, f.attname) for f in AllergyProfile._meta.concrete_fields]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_locked_read_holds_the_row_lock_on_postgres(verified_user) -> None:
    import psycopg
    from django.db import connection, transaction

    services.allergy_profile_replace(user=verified_user, confirmed=[], intolerances=["lactose"],
                                     severity={"lactose": "intolerance"})
    with transaction.atomic():
        selectors.allergy_profile_get_for_update(user=verified_user)
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT 1 FROM allergies_allergyprofile WHERE user_id = %s FOR UPDATE",
                              [verified_user.pk])
