"""project.rawsql: model instances from hand-written statements, and the health check the first read stands in for."""
from unittest import mock

import psycopg
import pytest
from django.db import OperationalError, connections

from allergies import services as allergy_services
from allergies.models import AllergyProfile
from identity.models import AuthToken, User
from project import rawsql

connection = connections["default"]  # the wrapper itself (monkeypatch cannot patch through the proxy)


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.mark.django_db
def test_instances_equal_what_the_orm_loads(verified_user, issued_token) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, confirmed=["peanuts"], intolerances=["lactose"],
                                             severity={"peanuts": "severe", "lactose": "intolerance"})
    for model, pk in ((User, verified_user.pk), (AuthToken, issued_token.token.pk),
                      (AllergyProfile, verified_user.pk)):
        columns = rawsql.Columns(model, "x")
        pk_column = columns.column(model._meta.pk.attname)
        row = rawsql.fetchone(f"SELECT {columns.select()} FROM {columns.table()} x WHERE {pk_column} = %s", [pk])  # noqa: S608
        loaded = columns.instance(row, 0)
        assert _fields(loaded) == _fields(model.objects.get(pk=pk))
        assert loaded._state.adding is False


@pytest.mark.django_db(transaction=True)
def test_first_read_of_a_request_is_the_health_check(monkeypatch) -> None:
    connection.ensure_connection()
    # As at the start of a request with CONN_HEALTH_CHECKS on (PostgreSQL's setting).
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    with mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as is_usable:
        assert rawsql.fetchone("SELECT 1", []) == (1,)
    assert is_usable.call_count == 0  # no separate SELECT 1 round trip
    assert connection.health_check_done is True


@pytest.mark.django_db(transaction=True)
def test_a_dead_connection_is_replaced_and_the_read_retried(monkeypatch) -> None:
    connection.ensure_connection()
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    real_cursor, real_close = connection.cursor, connection.close
    state = {"dead": True, "cursors": 0}

    def cursor():
        state["cursors"] += 1
        if state["dead"]:
            raise OperationalError("server closed the connection unexpectedly")
        return real_cursor()

    def close():
        state["dead"] = False  # a new connection comes next
        real_close()

    monkeypatch.setattr(connection, "cursor", cursor)
    monkeypatch.setattr(connection, "close", close)
    monkeypatch.setattr(connection, "is_usable", lambda: not state["dead"])
    assert rawsql.fetchone("SELECT 1", []) == (1,)
    assert state == {"dead": False, "cursors": 2}


@pytest.mark.django_db(transaction=True)
def test_an_error_on_a_live_connection_is_not_retried(monkeypatch) -> None:
    connection.ensure_connection()
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    closed = []
    monkeypatch.setattr(connection, "cursor", mock.Mock(side_effect=OperationalError("canceling statement")))
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))
    monkeypatch.setattr(connection, "is_usable", lambda: True)
    with pytest.raises(OperationalError):
        rawsql.fetchone("SELECT 1", [])
    assert connection.cursor.call_count == 1 and not closed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_backend_killed_between_requests_is_survived(monkeypatch, verified_user, issued_token) -> None:
    from identity import selectors

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)  # the next request starts
    token = selectors.auth_token_get_usable(raw=issued_token.raw)
    assert token is not None and token.user == verified_user
    assert connection.connection.info.backend_pid != pid


@pytest.mark.django_db
def test_insert_and_update_write_what_the_orm_writes(verified_user) -> None:
    import uuid

    from django.db import transaction
    from django.utils import timezone

    from agent_bridge.models import OutboxEvent
    from allergies.models import AllergyRevision

    at = timezone.now()
    values = {"type": "allergies.replaced", "schema": 2, "uid": uuid.uuid4(), "data": {"revision": 3},
              "occurred_at": at, "available_at": at, "traceparent": None}
    written = OutboxEvent(**values)
    with transaction.atomic():
        rawsql.insert(written)
    assert written.pk is None and written._state.adding is False  # nothing read back
    by_orm = OutboxEvent.objects.create(**{**values, "uid": uuid.uuid4()})
    loaded = OutboxEvent.objects.get(event_id=written.event_id)
    assert {**_fields(loaded), "id": None} == {**_fields(written), "id": None}
    assert {**_fields(loaded), "id": None, "uid": None, "event_id": None} == \
        {**_fields(by_orm), "id": None, "uid": None, "event_id": None}

    revision = AllergyRevision(user=verified_user, revision=1, created_at=at, session_id=None,
                               changes={"added": [{"allergen": "milk", "list": "confirmed", "severity": "severe"}]})
    rawsql.insert(revision)
    assert _fields(AllergyRevision.objects.get(user=verified_user)) == {**_fields(revision), "id": mock.ANY}

    profile = AllergyProfile.objects.create(user=verified_user, synced_revision=0, sync_last_error="kept")
    before = profile.updated_at
    profile.confirmed, profile.severity, profile.revision = ["milk"], {"milk": "severe"}, 1
    profile.sync_last_error = "not written"  # not among the fields given
    rawsql.update(profile, ["confirmed", "severity", "revision", "updated_at"])
    stored = AllergyProfile.objects.get(pk=verified_user.pk)
    assert (stored.confirmed, stored.severity, stored.revision) == (["milk"], {"milk": "severe"}, 1)
    assert stored.sync_last_error == "kept"
    assert stored.updated_at == profile.updated_at > before  # auto_now, as save() sets it


def test_pipeline_only_runs_the_block_off_postgresql() -> None:
    if connection.vendor == "postgresql":
        pytest.skip("SQLite only")
    with rawsql.pipeline():  # not even a transaction needed
        ran = True
    assert ran


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pipeline_reads_see_what_was_sent_before_and_an_error_rolls_the_transaction_back() -> None:
    from django.db import IntegrityError, transaction

    from agent_bridge.models import OutboxEvent

    def event(**fields) -> OutboxEvent:
        return OutboxEvent(type="user.registered", **fields)

    first = event()
    with transaction.atomic(), rawsql.pipeline():
        rawsql.insert(first)
        assert connection.connection.pgconn.pipeline_status != 0
        # A read waits for what was sent before it, in the same transaction.
        assert rawsql.fetchone("SELECT count(*) FROM agent_bridge_outboxevent", []) == (1,)
    assert OutboxEvent.objects.count() == 1

    with pytest.raises(IntegrityError), transaction.atomic(), rawsql.pipeline():
        rawsql.insert(event())
        rawsql.insert(event(event_id=first.event_id))  # unique: fails (seen at the latest at the end of the block)
    assert OutboxEvent.objects.count() == 1  # the whole transaction rolled back
    assert connection.connection.pgconn.pipeline_status == 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_pipeline_outside_a_transaction_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(connection, "in_atomic_block", False)  # as in autocommit mode
    with pytest.raises(RuntimeError), rawsql.pipeline():
        pass
