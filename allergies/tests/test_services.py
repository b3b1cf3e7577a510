"""Revisions, the event each change raises, and the sync-state transitions."""
import pytest

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from allergies import selectors, services
from allergies.history import allergy_changes
from allergies.models import AllergyProfile
from allergies.tests.test_selectors import sync_of
from allergies.validation import AllergyProfileInvalid

PEANUTS = {"confirmed": ["Peanut"], "intolerances": ["lactose"], "severity": {"peanuts": "anaphylactic",
                                                                                 "Lactose": "intolerance"}}


def replace(user, **overrides):
    return services.allergy_profile_replace(user=user, **{**PEANUTS, **overrides})


def state(user):
    return selectors.allergy_profile_get(user=user)


def allergy_events():
    return list(OutboxEvent.objects.filter(type=events.ALLERGIES_REPLACED).order_by("id"))


def test_a_user_without_a_profile_is_empty_and_synced_at_revision_0(verified_user) -> None:
    current = state(verified_user)
    assert (current.confirmed, current.intolerances, current.severity, current.revision) == ([], [], {}, 0)
    assert current.sync == sync_of("synced", 0, 0)


def test_replace_stores_normalised_names_and_raises_an_event_without_the_profile(verified_user) -> None:
    result = replace(verified_user)

    assert result.revision == 1
    assert result.confirmed == ["peanuts"]
    assert result.severity == {"peanuts": "anaphylactic", "lactose": "intolerance"}
    [event] = allergy_events()
    assert event.uid == verified_user.uid
    # Health data stays in the profile: the consumer reads the current state when it delivers.
    assert (event.data, event.schema) == ({"revision": 1}, 2)


def test_each_change_increments_the_revision_and_raises_one_event(verified_user) -> None:
    replace(verified_user)
    replace(verified_user, confirmed=["milk"], intolerances=[], severity={"milk": "severe"})
    cleared = services.allergy_profile_clear(user=verified_user)

    assert cleared.revision == 3
    assert (cleared.confirmed, cleared.intolerances, cleared.severity) == ([], [], {})
    assert [e.data["revision"] for e in allergy_events()] == [1, 2, 3]


def test_clear_without_a_profile_starts_at_revision_1(verified_user) -> None:
    assert services.allergy_profile_clear(user=verified_user).revision == 1
    assert len(allergy_events()) == 1


def test_an_invalid_profile_changes_nothing_and_raises_nothing(verified_user) -> None:
    replace(verified_user)
    with pytest.raises(AllergyProfileInvalid):
        replace(verified_user, severity={"peanuts": "deadly"})
    assert state(verified_user).revision == 1
    assert len(allergy_events()) == 1


def test_sync_state_transitions(verified_user) -> None:
    replace(verified_user)
    assert state(verified_user).sync == sync_of("pending", 1, 0)

    services.allergy_sync_record_failure(uid=verified_user.uid, error="AgentUnavailable 500: boom")
    assert state(verified_user).sync == sync_of("failing", 1, 0, code="agent_unreachable")

    # A new revision has not been tried yet: pending again (the error stays for the operator).
    replace(verified_user, confirmed=["milk"], intolerances=[], severity={"milk": "severe"})
    assert state(verified_user).sync == sync_of("pending", 2, 0)
    assert state(verified_user).sync_last_error == "AgentUnavailable 500: boom"

    # The Agent got revision 1 late: still not the current one.
    services.allergy_sync_record_success(uid=verified_user.uid, revision=1)
    assert state(verified_user).sync["state"] == "pending"
    assert state(verified_user).sync["synced_revision"] == 1

    services.allergy_sync_record_failure(uid=verified_user.uid, error="AgentTimeout: slow")
    assert state(verified_user).sync["state"] == "failing"

    services.allergy_sync_record_success(uid=verified_user.uid, revision=2)
    assert state(verified_user).sync == sync_of("synced", 2, 2)
    profile = AllergyProfile.objects.get(user=verified_user)
    assert (profile.sync_last_error, profile.sync_failed_at) == ("", None)


def test_synced_revision_never_moves_back(verified_user) -> None:
    replace(verified_user)
    replace(verified_user, confirmed=["milk"], intolerances=[], severity={"milk": "severe"})
    services.allergy_sync_record_success(uid=verified_user.uid, revision=2)
    services.allergy_sync_record_success(uid=verified_user.uid, revision=1)
    assert state(verified_user).synced_revision == 2


def test_a_failure_after_the_current_revision_is_synced_changes_nothing(verified_user) -> None:
    replace(verified_user)
    services.allergy_sync_record_success(uid=verified_user.uid, revision=1)
    services.allergy_sync_record_failure(uid=verified_user.uid, error="late failure of a stale attempt")
    assert state(verified_user).sync == sync_of("synced", 1, 1)


def test_sync_records_do_not_touch_updated_at(verified_user) -> None:
    before = replace(verified_user).updated_at
    services.allergy_sync_record_failure(uid=verified_user.uid, error="x")
    services.allergy_sync_record_success(uid=verified_user.uid, revision=1)
    assert state(verified_user).updated_at == before


def test_sync_records_for_an_unknown_user_are_ignored(db) -> None:
    import uuid

    from allergies.models import AllergyProfile

    services.allergy_sync_record_success(uid=uuid.uuid4(), revision=3)
    services.allergy_sync_record_failure(uid=uuid.uuid4(), error="x")
    assert not AllergyProfile.objects.exists()  # no profile is created for a uid nobody has


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_replacements_get_distinct_revisions_in_outbox_order() -> None:
    """The row lock serialises replacements: no lost update, no shared revision, even for the
    very first write (the row does not exist yet)."""
    import threading

    from django.db import connection

    from identity.models import User

    user = User.objects.create_user(email="race@example.com", password="x" * 12, username="race")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        try:
            barrier.wait()
            services.allergy_profile_replace(
                user=user, confirmed=[f"a{i}"], intolerances=[], severity={f"a{i}": "severe"}
            )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert state(user).revision == 8
    assert [e.data["revision"] for e in allergy_events()] == list(range(1, 9))
    # Each revision's history starts from the one before it: the state read under the lock, never a stale one.
    from allergies.models import AllergyRevision

    history = [r.changes for r in AllergyRevision.objects.filter(user=user).order_by("revision")]
    assert [len(changes["added"]) for changes in history] == [1] * 8
    assert history[0]["removed"] == []
    assert [changes["removed"] for changes in history[1:]] == [previous["added"] for previous in history[:-1]]


SYNC_CASES = [  # (revision, synced_revision, error) before; the revision recorded; (synced, error) after
    (3, 1, "AGENT_TIMEOUT late", 3, (3, "")),  # reaches the current revision: synced, the error cleared
    (3, 1, "AGENT_TIMEOUT late", 2, (2, "AGENT_TIMEOUT late")),  # an older one: forward, still failing
    (3, 3, "AGENT_TIMEOUT late", 2, (3, "")),  # already synced: never moves back, a stale error is cleared
    (2, 0, "", 5, (5, "")),  # beyond the current one (a read raced a write): recorded as it is
]


def _profile_set(user, revision: int, synced: int, error: str) -> None:
    from django.utils import timezone

    AllergyProfile.objects.get_or_create(user=user)
    AllergyProfile.objects.filter(user=user).update(
        revision=revision, synced_revision=synced, sync_last_error=error,
        sync_failed_at=timezone.now() if error else None)


@pytest.mark.parametrize(("revision", "synced", "error", "recorded", "after"), SYNC_CASES)
def test_the_sync_record_in_every_case(verified_user, revision, synced, error, recorded, after) -> None:
    _profile_set(verified_user, revision, synced, error)
    services.allergy_sync_record_success(uid=str(verified_user.uid), revision=recorded)
    profile = AllergyProfile.objects.get(user=verified_user)
    assert (profile.synced_revision, profile.sync_last_error) == after
    assert (profile.sync_failed_at is None) == (after[1] == "")


def test_the_sync_record_compiles_no_orm_query_and_leaves_other_users_alone(
    verified_user, user, orm_compilations_refused
) -> None:
    import uuid

    _profile_set(verified_user, 2, 0, "AGENT_TIMEOUT late")
    _profile_set(user, 2, 0, "AGENT_TIMEOUT late")

    with orm_compilations_refused():
        services.allergy_sync_record_success(uid=verified_user.uid, revision=2)
        services.allergy_sync_record_success(uid=uuid.uuid4(), revision=9)  # an unknown user: nothing

    mine, theirs = AllergyProfile.objects.get(user=verified_user), AllergyProfile.objects.get(user=user)
    assert (mine.synced_revision, mine.sync_last_error, mine.sync_failed_at) == (2, "", None)
    assert (theirs.synced_revision, theirs.sync_last_error) == (0, "AGENT_TIMEOUT late")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sync_record_is_prepared_on_the_server_after_a_few_runs(verified_user) -> None:
    """The consumer runs it for every event: it binds on the server, so PostgreSQL stops planning it."""
    from project import rawsql

    _profile_set(verified_user, 9, 0, "")
    for revision in range(1, 8):  # past psycopg's prepare_threshold (5)
        services.allergy_sync_record_success(uid=verified_user.uid, revision=revision)
    assert AllergyProfile.objects.get(user=verified_user).synced_revision == 7
    prepared = rawsql.fetchone("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                               ["%GREATEST%"])
    assert prepared == (1,)


# --- allergy_profile_replace_authenticated: the token read by the locked update's statement ------------------


def _clean(**overrides):
    from allergies.validation import allergy_profile_clean

    return allergy_profile_clean(**{**PEANUTS, **overrides})


def test_replace_authenticated_writes_as_replace_and_names_the_session(issued_token, verified_user) -> None:
    """The first write (no profile row yet) and the next one: the same rows as allergy_profile_replace, the token
    (its user attached) returned and recorded as the revision's session."""
    from allergies.models import AllergyRevision

    for revision in (1, 2):
        token, written = services.allergy_profile_replace_authenticated(raw=issued_token.raw, clean=_clean())
        assert token.pk == issued_token.token.pk and token.user.pk == verified_user.pk
        assert written == state(verified_user) and written.revision == revision
        assert written.confirmed == ["peanuts"] and written.severity == {"peanuts": "anaphylactic",
                                                                         "lactose": "intolerance"}
    assert [e.data["revision"] for e in allergy_events()] == [1, 2]
    history = list(AllergyRevision.objects.filter(user=verified_user).order_by("revision"))
    assert [(h.revision, h.session_id) for h in history] == [(1, issued_token.token.pk), (2, issued_token.token.pk)]
    clean = _clean()
    after = {"confirmed": clean.confirmed, "intolerances": clean.intolerances, "severity": clean.severity}
    assert history[0].changes == allergy_changes(before={"confirmed": [], "intolerances": [], "severity": {}},
                                                 after=after)
    assert history[1].changes == allergy_changes(before=after, after=after)


def test_replace_authenticated_refuses_an_unusable_token_and_writes_nothing(unusable_tokens, verified_user) -> None:
    replace(verified_user)
    before = state(verified_user)
    milk = _clean(confirmed=["milk"], intolerances=[], severity={"milk": "severe"})
    for raw in unusable_tokens.values():
        assert services.allergy_profile_replace_authenticated(raw=raw, clean=milk) is None
    assert state(verified_user) == before and len(allergy_events()) == 1


@pytest.mark.postgres
def test_replace_authenticated_reads_the_token_once(issued_token, verified_user, monkeypatch) -> None:
    """One statement, one read of the token and its user (a CTE the lock and the answer share): its hash is sent
    once, and the statement still refuses a token revoked just before (test above, and tests/security)."""
    from identity.tokens import auth_token_hash
    from project import rawsql

    replace(verified_user)  # the profile row exists: the PUT's steady state
    sent: list[list] = []
    real_fetchone = rawsql.fetchone

    def fetchone(sql, params, **kwargs):
        sent.append(list(params))
        return real_fetchone(sql, params, **kwargs)

    monkeypatch.setattr(rawsql, "fetchone", fetchone)
    token, written = services.allergy_profile_replace_authenticated(raw=issued_token.raw, clean=_clean())
    assert token.pk == issued_token.token.pk and written == state(verified_user)
    assert len(sent) == 1 and sent[0].count(auth_token_hash(issued_token.raw)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dead", [False, True])
def test_replace_authenticated_is_the_health_check(issued_token, verified_user, monkeypatch, dead) -> None:
    """Its statement stands in for Django's health check (no SELECT 1 round trip before it); a persistent connection
    that died between requests (database restarted) is replaced, and the write made once."""
    from unittest import mock

    from django.db import connections

    connection = connections["default"]  # the wrapper itself (monkeypatch cannot patch through the proxy)
    connection.ensure_connection()
    # As at the start of a request with CONN_HEALTH_CHECKS on (PostgreSQL's setting).
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    if dead:
        connection.connection.close()  # as the server's end going away
    with mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as is_usable:
        _, written = services.allergy_profile_replace_authenticated(raw=issued_token.raw, clean=_clean())
    assert written.revision == 1 and len(allergy_events()) == 1
    assert is_usable.call_count == (1 if dead else 0)
