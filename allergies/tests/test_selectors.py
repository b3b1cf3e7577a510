"""allergies/selectors.py: the sync state shown to people, recognised vs custom names, and the allergy GET's
one statement (token, user and profile) and PUT's locked read."""
from datetime import UTC, datetime

import pytest

from allergies import selectors, services
from allergies.selectors import SYNC_MESSAGES, AllergyState
from identity import services as identity_services


def sync_of(
    state: str, revision: int, synced_revision: int, code: str | None = None, verified_at: datetime | None = None
) -> dict:
    """The `sync` object of an allergy answer (shared by the tests that check it)."""
    code = code or state
    return {
        "state": state, "code": code, "message": SYNC_MESSAGES[code],
        "revision": revision, "synced_revision": synced_revision, "verified_at": verified_at,
    }


def failing(error: str) -> AllergyState:
    return AllergyState(["peanuts"], [], {"peanuts": "severe"}, 2, None, 1, error, datetime.now(UTC))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("AgentConnectionError AGENT_CONNECTION_ERROR: on PATCH /users/u/allergies: refused", "agent_unreachable"),
        ("AgentTimeout AGENT_TIMEOUT: timed out", "agent_unreachable"),
        ("AgentUnavailable 503 AGENT_UNAVAILABLE: AGENT_UNAVAILABLE (HTTP 503)", "agent_unreachable"),
        ("AgentInvalidPayload 422 INVALID_PAYLOAD: bad", "agent_rejected"),
        ("KeyError: 'boom' in /srv/app/consumers/handlers.py", "sync_failed"),
    ],
)
def test_a_failure_is_told_with_a_code_and_no_internal_detail(error, code) -> None:
    sync = failing(error).sync
    assert sync == sync_of("failing", 2, 1, code=code)
    assert "/users/" not in sync["message"] and "Agent" not in sync["message"] and ".py" not in sync["message"]


def test_recognised_and_custom_names() -> None:
    state = AllergyState(["peanuts", "mango"], ["lactose"], {}, 1, None, 0, "", None)
    assert state.recognised == ["peanuts"]
    assert state.custom == ["mango", "lactose"]


def test_a_sent_profile_being_read_back_is_pending_with_its_own_code() -> None:
    at = datetime.now(UTC)
    verifying = AllergyState(["peanuts"], [], {"peanuts": "severe"}, 2, None, 2, "", None, at, True)
    assert verifying.sync == sync_of("pending", 2, 2, code="verifying", verified_at=at)
    resolved = AllergyState(["peanuts"], [], {"peanuts": "severe"}, 2, None, 2, "", None, at, False)
    assert resolved.sync == sync_of("synced", 2, 2, verified_at=at)


@pytest.mark.django_db
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


@pytest.mark.django_db
def test_user_without_a_profile_is_at_revision_zero(verified_user, issued_token) -> None:
    token, state = selectors.allergy_profile_get_with_token(raw=issued_token.raw)
    assert state == selectors.AllergyState.of(None) and token.user.pk == verified_user.pk


@pytest.mark.django_db
def test_same_rules_as_the_token_lookup(verified_user, unusable_tokens) -> None:
    live = identity_services.auth_token_issue(user=verified_user)
    for raw in unusable_tokens.values():
        assert selectors.allergy_profile_get_with_token(raw=raw) is None, raw
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


CONSUMER_PEANUTS = {"confirmed": ["peanuts"], "intolerances": ["lactose"],
                    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"}}


@pytest.mark.django_db
def test_the_consumers_read_by_uid(verified_user) -> None:
    import uuid

    from allergies.models import AllergyProfile

    services.allergy_profile_replace(user=verified_user, **CONSUMER_PEANUTS)
    AllergyProfile.objects.filter(user=verified_user).update(synced_revision=1, sync_last_error="AGENT_TIMEOUT x")
    profile = AllergyProfile.objects.get(user=verified_user)

    for uid in (verified_user.uid, str(verified_user.uid)):
        assert selectors.allergy_profile_get_by_uid(uid=uid) == AllergyState.of(profile)
    state = selectors.allergy_profile_get_by_uid(uid=verified_user.uid)
    assert (state.confirmed, state.severity, state.revision, state.synced_revision, state.sync_last_error) == (
        ["peanuts"], CONSUMER_PEANUTS["severity"], 1, 1, "AGENT_TIMEOUT x")
    assert state.updated_at is not None and state.updated_at.tzinfo is not None

    AllergyProfile.objects.filter(user=verified_user).delete()
    assert selectors.allergy_profile_get_by_uid(uid=verified_user.uid) == AllergyState.of(None), "no profile yet"
    assert selectors.allergy_profile_get_by_uid(uid=uuid.uuid4()) is None, "no such user"


@pytest.mark.django_db
def test_the_consumers_read_by_uid_compiles_no_orm_query(verified_user, orm_compilations_refused) -> None:
    services.allergy_profile_replace(user=verified_user, **CONSUMER_PEANUTS)
    with orm_compilations_refused():
        state = selectors.allergy_profile_get_by_uid(uid=verified_user.uid)
    assert state.confirmed == ["peanuts"]
