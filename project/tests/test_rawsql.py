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
