"""The consumers app's reads: the allergies handler's state read, held equal to the ORM selector it stands in for."""
import uuid
from contextlib import ExitStack
from unittest import mock

import pytest
from django.db.models.sql import compiler

from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from allergies.models import AllergyProfile
from consumers import selectors

pytestmark = pytest.mark.django_db

PEANUTS = {"confirmed": ["peanuts"], "intolerances": ["lactose"],
           "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"}}


def orm_compilations() -> ExitStack:
    """While open, any query the ORM compiles (SELECT, INSERT, UPDATE, DELETE) fails the test."""
    stack = ExitStack()
    for klass in (compiler.SQLCompiler, compiler.SQLInsertCompiler, compiler.SQLUpdateCompiler,
                  compiler.SQLDeleteCompiler):
        stack.enter_context(mock.patch.object(klass, "as_sql", side_effect=AssertionError("ORM compiled a query")))
    return stack


def test_the_allergy_state_is_the_orm_selectors_for_a_user_with_a_profile(verified_user) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    AllergyProfile.objects.filter(user=verified_user).update(synced_revision=1, sync_last_error="AGENT_TIMEOUT x")

    for uid in (verified_user.uid, str(verified_user.uid)):
        state = selectors.allergy_state_get_by_uid(uid=uid)
        assert state == allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    assert (state.confirmed, state.severity, state.revision, state.synced_revision) == (
        ["peanuts"], PEANUTS["severity"], 1, 1)
    assert state.updated_at is not None and state.updated_at.tzinfo is not None


def test_a_user_without_a_profile_has_the_empty_state_and_an_unknown_user_none(verified_user) -> None:
    AllergyProfile.objects.filter(user=verified_user).delete()

    assert selectors.allergy_state_get_by_uid(uid=verified_user.uid) == allergy_selectors.AllergyState.of(None)
    assert selectors.allergy_state_get_by_uid(uid=uuid.uuid4()) is None


def test_the_allergy_state_read_compiles_no_orm_query(verified_user) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    expected = allergy_selectors.allergy_profile_get_by_uid(uid=verified_user.uid)

    with orm_compilations():
        assert selectors.allergy_state_get_by_uid(uid=verified_user.uid) == expected
