"""project.rawsql: model instances from hand-written statements, and the health check the first read stands in for."""
import uuid
from unittest import mock

import psycopg
import pytest
from django.db import OperationalError, connections

from allergies import services as allergy_services
from allergies.models import AllergyProfile
from identity.models import AuthToken, User
from project import rawsql

connection = connections["default"]  # the wrapper itself (monkeypatch cannot patch through the proxy)


def _event_insert(**values) -> None:
    from agent_bridge.models import OutboxEvent

    rawsql.insert_values(OutboxEvent, {"type": "user.registered", **values})


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
    real_cursor, real_close = rawsql._cursor, connection.close
    state = {"dead": True, "cursors": 0}

    def cursor(wrapper):
        state["cursors"] += 1
        if state["dead"]:
            raise OperationalError("server closed the connection unexpectedly")
        return real_cursor(wrapper)

    def close():
        state["dead"] = False  # a new connection comes next
        real_close()

    monkeypatch.setattr(rawsql, "_cursor", cursor)
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
    cursor = mock.Mock(side_effect=OperationalError("canceling statement"))
    monkeypatch.setattr(rawsql, "_cursor", cursor)
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))
    monkeypatch.setattr(connection, "is_usable", lambda: True)
    with pytest.raises(OperationalError):
        rawsql.fetchone("SELECT 1", [])
    assert cursor.call_count == 1 and not closed


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
def test_insert_values_and_update_write_what_the_orm_writes(verified_user) -> None:
    from django.db import transaction
    from django.utils import timezone

    from agent_bridge.models import OutboxEvent
    from allergies.models import AllergyRevision

    at = timezone.now()
    values = {"type": "allergies.replaced", "schema": 2, "uid": uuid.uuid4(), "data": {"revision": 3},
              "occurred_at": at, "available_at": at, "traceparent": None, "event_id": uuid.uuid4()}
    with transaction.atomic():
        rawsql.insert_values(OutboxEvent, values)
    by_orm = OutboxEvent.objects.create(**{**values, "uid": uuid.uuid4(), "event_id": uuid.uuid4()})
    loaded = OutboxEvent.objects.get(event_id=values["event_id"])
    assert {**_fields(loaded), "id": None} == {**_fields(OutboxEvent(**values)), "id": None}
    assert {**_fields(loaded), "id": None, "uid": None, "event_id": None} == \
        {**_fields(by_orm), "id": None, "uid": None, "event_id": None}

    changes = {"added": [{"allergen": "milk", "list": "confirmed", "severity": "severe"}]}
    rawsql.insert_values(AllergyRevision, {"user_id": verified_user.pk, "revision": 1, "created_at": at,
                                           "session_id": None, "changes": changes})
    expected = AllergyRevision(user=verified_user, revision=1, created_at=at, session_id=None, changes=changes)
    assert _fields(AllergyRevision.objects.get(user=verified_user)) == {**_fields(expected), "id": mock.ANY}

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

    first = uuid.uuid4()
    with transaction.atomic(), rawsql.pipeline():
        _event_insert(event_id=first)
        assert connection.connection.pgconn.pipeline_status != 0
        # A read waits for what was sent before it, in the same transaction.
        assert rawsql.fetchone("SELECT count(*) FROM agent_bridge_outboxevent", []) == (1,)
    assert OutboxEvent.objects.count() == 1

    with pytest.raises(IntegrityError), transaction.atomic(), rawsql.pipeline():
        _event_insert()
        _event_insert(event_id=first)  # unique: fails (seen at the latest at the end of the block)
    assert OutboxEvent.objects.count() == 1  # the whole transaction rolled back
    assert connection.connection.pgconn.pipeline_status == 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_pipeline_outside_a_transaction_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(connection, "in_atomic_block", False)  # as in autocommit mode
    with pytest.raises(RuntimeError), rawsql.pipeline():
        pass


def _waits() -> tuple:
    """Counts psycopg's waits for the server outside a pipeline's reads: a command sent on its own (BEGIN,
    COMMIT: psycopg.generators.execute), a Sync inside a pipeline (psycopg sends one after its own BEGIN) and
    the end of a pipeline (its Sync)."""
    import psycopg._pipeline_base as pipeline_base
    import psycopg.generators as generators

    counter = mock.Mock(side_effect=generators.execute)
    syncs = mock.Mock(side_effect=pipeline_base.BasePipeline._sync_gen)

    def sync(self):
        return syncs(self)

    return counter, mock.patch.object(generators, "execute", counter), \
        mock.patch.object(psycopg.Pipeline, "__exit__", autospec=True, side_effect=psycopg.Pipeline.__exit__), \
        syncs, mock.patch.object(pipeline_base.BasePipeline, "_sync_gen", sync)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_atomic_pipeline_commits_with_the_last_statements_in_one_wait() -> None:

    counter, patch_execute, patch_exit, syncs, patch_sync = _waits()
    with patch_execute, patch_exit as ends, patch_sync:
        with rawsql.atomic_pipeline():
            _event_insert()
            _event_insert()
        # One wait: the end of the pipeline carries BEGIN, the two INSERTs and the COMMIT (psycopg's own BEGIN
        # would be followed by a Sync and a wait of its own); Django's commit afterwards finds the transaction
        # ended and sends nothing.
        assert (ends.call_count, counter.call_count, syncs.call_count) == (1, 0, 0)
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert connection.get_autocommit() and connection.connection.autocommit
    with psycopg.connect(_dsn()) as other:  # committed: seen from another connection
        assert other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone() == (2,)


def _dsn() -> str:
    import os

    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_atomic_pipeline_inside_another_transaction_leaves_the_commit_to_it() -> None:
    from django.db import transaction

    from agent_bridge.models import OutboxEvent

    with transaction.atomic():
        with rawsql.atomic_pipeline():  # a savepoint here: no COMMIT of its own
            _event_insert()
        assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        transaction.set_rollback(True)
    assert OutboxEvent.objects.count() == 0  # the outer transaction's rollback took the row with it


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_atomic_pipeline_error_commits_nothing() -> None:
    from django.db import IntegrityError

    from agent_bridge.models import OutboxEvent

    first = uuid.uuid4()
    with rawsql.atomic_pipeline():
        _event_insert(event_id=first)
    with pytest.raises(IntegrityError), rawsql.atomic_pipeline():
        _event_insert()
        _event_insert(event_id=first)  # unique: the block fails
    assert OutboxEvent.objects.count() == 1
    assert connection.connection.pgconn.pipeline_status == 0
    with rawsql.atomic_pipeline():  # the connection is fine afterwards
        _event_insert()
    assert OutboxEvent.objects.count() == 2


def test_atomic_pipeline_is_a_transaction_off_postgresql(db) -> None:
    from agent_bridge.models import OutboxEvent

    if connection.vendor == "postgresql":
        pytest.skip("SQLite only")
    with pytest.raises(ZeroDivisionError), rawsql.atomic_pipeline():
        _event_insert()
        1 / 0  # noqa: B018
    assert OutboxEvent.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_run_often_is_prepared_on_the_server(verified_user, issued_token) -> None:
    """The hot statements bind their parameters on the server, so psycopg prepares them after a few runs and
    PostgreSQL stops parsing and planning them per request (Django's client-side cursor never does)."""
    from identity import selectors

    for _ in range(7):  # past psycopg's prepare_threshold (5)
        assert selectors.auth_token_get_usable(raw=issued_token.raw).user == verified_user
    prepared = rawsql.fetchone("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                               ["%key_hash%"])
    assert prepared == (1,)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["exception", "set_rollback"])
def test_atomic_pipeline_with_its_own_begin_rolls_back_what_it_sent(how: str) -> None:
    """BEGIN is sent by the block, not psycopg (left in autocommit meanwhile): a block that fails after its
    statements were sent, or is marked for rollback, still commits nothing, and the connection is left as Django
    leaves it (autocommit on, no transaction open)."""
    from django.db import transaction

    from agent_bridge.models import OutboxEvent

    with rawsql.atomic_pipeline():  # a first transaction: the connection is open and idle
        _event_insert()
    try:
        with rawsql.atomic_pipeline():
            _event_insert()
            assert rawsql.fetchone("SELECT count(*) FROM agent_bridge_outboxevent", []) == (2,)  # sent, in the tx
            if how == "exception":
                raise ValueError("the block fails after writing")
            transaction.set_rollback(True)
    except ValueError:
        pass
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert connection.get_autocommit() and connection.connection.autocommit
    with psycopg.connect(_dsn()) as other:
        assert other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone() == (1,)
    assert OutboxEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_atomic_pipeline_with_its_own_begin_runs_on_commit_hooks_after_the_commit_only() -> None:
    """Django still owns the transaction: a hook registered in the block runs once, after the COMMIT (the row is
    visible from another connection by then), and a block rolled back runs none."""
    from django.db import transaction


    seen: list[int] = []

    def committed_rows() -> None:
        with psycopg.connect(_dsn()) as other:
            seen.append(other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone()[0])

    with rawsql.atomic_pipeline():  # a first transaction: the connection is open and idle (own BEGIN from here)
        _event_insert()
    with rawsql.atomic_pipeline():
        _event_insert()
        transaction.on_commit(committed_rows)
        assert seen == []
    assert seen == [2]
    with rawsql.atomic_pipeline():
        _event_insert()
        transaction.on_commit(committed_rows)
        transaction.set_rollback(True)
    assert seen == [2]


@pytest.mark.django_db
def test_insert_values_fills_the_other_fields_as_the_orm_does(verified_user) -> None:
    """The same row as the ORM's create(): given values prepared by their fields, the others at their defaults
    (constants, and callable defaults called for each row)."""
    from django.db import transaction
    from django.utils import timezone

    from agent_bridge.models import OutboxEvent
    from allergies.models import AllergyRevision

    uid = uuid.uuid4()
    values = {"type": "allergies.replaced", "schema": 2, "uid": uid, "data": {"revision": 3}, "traceparent": None}
    started = timezone.now()
    with transaction.atomic():
        OutboxEvent.objects.create(**values)
        rawsql.insert_values(OutboxEvent, values)
        rawsql.insert_values(OutboxEvent, values)
    by_instance, *by_values = OutboxEvent.objects.filter(uid=uid).order_by("id")
    ignored = {"id": None, "event_id": None, "occurred_at": None, "available_at": None}
    for row in by_values:
        assert {**_fields(row), **ignored} == {**_fields(by_instance), **ignored}
        assert row.occurred_at >= started and row.available_at >= started  # timezone.now, per row
    assert len({row.event_id for row in (by_instance, *by_values)}) == 3  # uuid4, per row

    at = timezone.now()
    changes = {"added": [{"allergen": "milk", "list": "confirmed", "severity": "severe"}]}
    rawsql.insert_values(AllergyRevision, {"user_id": verified_user.pk, "revision": 1, "created_at": at,
                                           "changes": changes})
    expected = AllergyRevision(user=verified_user, revision=1, created_at=at, changes=changes)
    assert _fields(AllergyRevision.objects.get(user=verified_user)) == {**_fields(expected), "id": mock.ANY}


def test_insert_values_refuses_what_needs_an_instance() -> None:
    """A field whose pre_save computes its value (AllergyProfile.updated_at: auto_now), or an unknown name."""
    from agent_bridge.models import OutboxEvent

    with pytest.raises(ValueError, match="pre_save"):
        rawsql.insert_values(AllergyProfile, {"user_id": 1})
    with pytest.raises(ValueError, match="no field"):
        rawsql.insert_values(OutboxEvent, {"kind": "x"})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("answered_first", [False, True])
def test_first_statement_checked_retries_only_before_the_first_answer(monkeypatch, answered_first) -> None:
    """A dead connection found by the first statement is replaced and the work run once more; once that statement
    was answered, a failure is raised as it is (the work may have done something), on whatever connection."""
    connection.ensure_connection()
    monkeypatch.setattr(connection, "health_check_enabled", True)
    monkeypatch.setattr(connection, "health_check_done", False)
    monkeypatch.setattr(connection, "is_usable", lambda: False)  # as a connection whose server went away
    calls: list[int] = []

    def run(answered):
        calls.append(1)
        if len(calls) == 1:
            if answered_first:
                answered()
            raise OperationalError("server closed the connection unexpectedly")
        return "done"

    if answered_first:
        with pytest.raises(OperationalError):
            rawsql.first_statement_checked(run)
        assert len(calls) == 1
    else:
        assert rawsql.first_statement_checked(run) == "done"
        assert len(calls) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_statements_run_on_one_kept_psycopg_cursor_per_connection(monkeypatch) -> None:
    """Nothing watching: every statement on the connection's own psycopg cursor, created once (not a cursor and a
    Django CursorWrapper per statement); a new connection gets a new one."""
    made = mock.Mock(side_effect=connection.make_cursor)
    monkeypatch.setattr(connection, "make_cursor", made)
    assert rawsql.fetchone("SELECT 1", []) == (1,)
    kept = connection._rawsql_cursor.raw
    with rawsql.atomic_pipeline():
        rawsql.execute("SELECT 2", [])
        assert rawsql.fetchone("SELECT 3", []) == (3,)
    assert rawsql.fetchall("SELECT generate_series(1, %(n)s)", {"n": 2}) == [(1,), (2,)]
    assert connection._rawsql_cursor.raw is kept and not kept.closed
    assert made.call_count == 0
    connection.close()
    assert rawsql.fetchone("SELECT 4", []) == (4,)
    assert connection._rawsql_cursor.raw is not kept


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_kept_cursor_keeps_djangos_errors_and_broken_transaction_check() -> None:
    from django.db import DataError, transaction
    from django.db.transaction import TransactionManagementError

    with pytest.raises(DataError):  # Django's exception, not psycopg's
        rawsql.fetchone("SELECT 1 / %s", [0])
    with transaction.atomic():
        transaction.set_rollback(True)  # as after an error caught inside the block
        with pytest.raises(TransactionManagementError):
            rawsql.execute("SELECT 1", [])
    assert rawsql.fetchone("SELECT 1", []) == (1,)  # and the connection is fine afterwards


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_watched_statements_go_through_djangos_cursor() -> None:
    """An execute wrapper or the query log (tests, bench/queries.py) sees every statement, as on Django's cursor."""
    from django.test.utils import CaptureQueriesContext

    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert rawsql.fetchone("SELECT 5", []) == (5,)
    with CaptureQueriesContext(connection) as captured:
        assert rawsql.fetchone("SELECT 6", []) == (6,)
    assert seen == ["SELECT 5"] and [q["sql"] for q in captured.captured_queries] == ["SELECT 6"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_atomic_pipeline_is_one_implicit_transaction_without_begin_or_commit(monkeypatch) -> None:
    """The outermost block sends no BEGIN and no COMMIT: its statements up to the pipeline's Sync are PostgreSQL's
    implicit transaction. A read in the block does not end it (nothing is visible elsewhere until the block's
    end, and the block's statements share one transaction id), the end commits it."""
    sent: list[str] = []
    real_execute = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        if self.connection is connection.connection:  # the service's connection, not `other`
            sent.append(str(query).split()[0].upper())
        return real_execute(self, query, *args, **kwargs)

    with rawsql.atomic_pipeline():  # a first transaction: the connection is open and idle
        _event_insert()
    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    with psycopg.connect(_dsn(), autocommit=True) as other:
        with rawsql.atomic_pipeline():
            _event_insert()
            first = rawsql.fetchone("SELECT txid_current(), count(*) FROM agent_bridge_outboxevent", [])
            assert first[1] == 2  # its own write, seen
            assert other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone() == (1,)  # not committed
            _event_insert()
            assert rawsql.fetchone("SELECT txid_current()", [])[0] == first[0]
        assert other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone() == (3,)
    assert sent == ["INSERT", "SELECT", "INSERT", "SELECT"]
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_savepoint_in_an_implicit_atomic_pipeline_fails_loudly_and_commits_nothing() -> None:
    """PostgreSQL refuses SAVEPOINT outside an explicit transaction block: a nested atomic() in the block is an
    error, never a half-committed block."""
    from django.db import DatabaseError, transaction

    from agent_bridge.models import OutboxEvent

    with rawsql.atomic_pipeline():  # a first transaction: the connection is open and idle
        _event_insert()
    with pytest.raises(DatabaseError, match="SAVEPOINT"), rawsql.atomic_pipeline():
        _event_insert()
        with transaction.atomic():
            _event_insert()
    assert OutboxEvent.objects.count() == 1
    with rawsql.atomic_pipeline():  # the connection is fine afterwards
        _event_insert()
    assert OutboxEvent.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_implicit_atomic_pipeline_whose_rollback_cannot_be_sent_commits_nothing(monkeypatch) -> None:
    """A block that raises after writing, on a healthy pipeline, where the ROLLBACK itself fails to go out: the
    connection is closed rather than left to the Sync, which would commit the block's writes."""
    from agent_bridge.models import OutboxEvent

    with rawsql.atomic_pipeline():  # a first transaction: the connection is open and idle
        _event_insert()
    real_execute = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        if str(query) == "ROLLBACK":
            raise psycopg.InterfaceError("the ROLLBACK could not be sent")
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    with pytest.raises(Exception) as raised, rawsql.atomic_pipeline():
        _event_insert()
        raise ValueError("the block fails after writing")
    assert isinstance(raised.value, ValueError) or isinstance(raised.value.__context__, ValueError)
    monkeypatch.undo()
    with psycopg.connect(_dsn()) as other:
        assert other.execute("SELECT count(*) FROM agent_bridge_outboxevent").fetchone() == (1,)
    connection.close()
    assert OutboxEvent.objects.count() == 1  # and Django's next connection works


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_timestamps_are_read_by_psycopgs_own_loader_on_a_utc_session(monkeypatch, verified_user) -> None:
    """Django's timestamptz loader parses in Python (~6 % of a PUT); on a UTC session the statements' cursor
    reads with psycopg's own and gets the very same aware datetimes."""
    import datetime

    from django.db.backends.postgresql import psycopg_any

    parsed_by_django: list[object] = []
    django_load = psycopg_any.BaseTzLoader.load
    monkeypatch.setattr(psycopg_any.BaseTzLoader, "load",
                        lambda self, data: parsed_by_django.append(data) or django_load(self, data))
    orm = User.objects.values_list("date_joined", flat=True).get(pk=verified_user.pk)
    assert parsed_by_django  # the ORM's cursor: Django's loader (so the check below can fail)
    parsed_by_django.clear()
    connection.close()  # a new connection and kept cursor, whatever earlier tests left
    columns = rawsql.Columns(User, "u", only=("date_joined",))
    row = rawsql.fetchone(f"SELECT {columns.select()}, %s::timestamptz FROM {columns.table()} u "  # noqa: S608
                          f"WHERE u.id = %s", [orm, verified_user.pk])
    assert parsed_by_django == []
    assert row == (orm, orm) and row[0].tzinfo is datetime.UTC is orm.tzinfo
    assert rawsql.utc_session(connection)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_session_not_in_utc_keeps_djangos_loader(monkeypatch) -> None:
    """Django's timezone not UTC, or the session's: the statements' cursor reads timestamps with Django's loader."""
    import zoneinfo

    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader
    from psycopg.pq import Format

    def loader() -> type:
        return rawsql._psycopg_cursor(connection).adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)

    rawsql.fetchone("SELECT 1", [])
    assert rawsql.utc_session(connection) and not issubclass(loader(), BaseTzLoader)
    monkeypatch.setattr(connection, "timezone", zoneinfo.ZoneInfo("Europe/Paris"))
    assert not rawsql.utc_session(connection) and issubclass(loader(), BaseTzLoader)
    monkeypatch.undo()
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Europe/Paris'")
    try:
        assert not rawsql.utc_session(connection) and issubclass(loader(), BaseTzLoader)
    finally:
        connection.close()


def test_values_with_nothing_to_convert_look_up_no_connection(monkeypatch) -> None:
    """The token's and the user's columns on PostgreSQL: their slice as it is, without `connections[...]` (a
    thread-local lookup, 1 % of a PUT's samples when it was made for each model of the row)."""
    columns = rawsql.Columns(AuthToken, "t")
    columns._converters["default"] = []

    class NoLookup:
        def __getitem__(self, alias: str) -> None:
            raise AssertionError(f"connections[{alias!r}] looked up")

    monkeypatch.setattr(rawsql, "connections", NoLookup())
    row = ("before", *range(len(columns)), "after")
    assert columns.values(row, 1) == list(range(len(columns)))
