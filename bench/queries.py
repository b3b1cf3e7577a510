"""Database statements per API request, counted in-process (Django's CaptureQueriesContext, which also logs
BEGIN/COMMIT): the service's GET/PUT /api/allergies/ and the idiomatic peer's, each in its steady state (the
request repeated once first, so the token's rare last-use write is not counted). Round trips add Django's
health check (CONN_HEALTH_CHECKS, a `SELECT 1` before a request's first ORM query, which the capture does not
see), counted by calling the request as a new request would start: health check not yet done. Round trips are
counted where psycopg waits for the server (see `_round_trips`), so statements sent together in a pipeline
(project.rawsql.pipeline) count once."""
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from bench.load import PUT_BODIES
from bench.stack import Stack

REQUESTS = {
    "allergies_get": ("GET", "/api/allergies/", False),
    "allergies_put": ("PUT", "/api/allergies/", True),
    "peer_get": ("GET", "/api/bench/peer/allergies/", False),
    "peer_put": ("PUT", "/api/bench/peer/allergies/", True),
}


@contextlib.contextmanager
def _round_trips() -> Iterator[list[int]]:
    """Counts the times psycopg 3 waits for the server: each statement, BEGIN or COMMIT sent on its own (its
    `execute` generator, what Connection.wait runs), and in a pipeline each result read (a cursor's fetch: it
    waits for everything sent before it), each Sync psycopg sends inside it (after its own BEGIN, a commit) and
    one at its end (the Sync). Counted by construction rather than by timing: in a pipeline, whether a result is
    already there when read depends on the machine. psycopg's internals, for this diagnostic only; nothing is
    counted on SQLite."""
    from unittest import mock

    counter = [0]
    try:
        import psycopg
        import psycopg._cursor_base as cursor_base
        import psycopg._pipeline_base as pipeline_base
        import psycopg.generators as generators
    except ImportError:
        yield counter
        return

    def counted(function: Any, *, only_in_pipeline: bool = False) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not only_in_pipeline or args[0]._conn._pipeline is not None:
                counter[0] += 1
            return function(*args, **kwargs)
        return wrapper

    with mock.patch.object(cursor_base, "execute", counted(cursor_base.execute)), \
            mock.patch.object(generators, "execute", counted(generators.execute)), \
            mock.patch.object(psycopg.Cursor, "_fetch_pipeline",
                              counted(psycopg.Cursor._fetch_pipeline, only_in_pipeline=True)), \
            mock.patch.object(pipeline_base.BasePipeline, "_sync_gen", counted(pipeline_base.BasePipeline._sync_gen)), \
            mock.patch.object(psycopg.Pipeline, "__exit__", counted(psycopg.Pipeline.__exit__)):
        yield counter


def api_statements(stack: Stack, token: str, peer_token: str) -> dict[str, Any]:
    from unittest import mock

    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    connection = connections["default"]

    client = Client(HTTP_HOST="127.0.0.1")
    out: dict[str, Any] = {}
    for name, (method, path, body) in REQUESTS.items():
        credential = peer_token if name.startswith("peer") else token
        kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {credential}"}
        if body:
            kwargs.update(data=json.dumps(PUT_BODIES[0]), content_type="application/json")
        call = getattr(client, method.lower())
        call(path, **kwargs)
        connection.health_check_done = False  # as at the start of a request (the test client does not reset it)
        with CaptureQueriesContext(connection) as captured, _round_trips() as round_trips, _sent() as sent, \
                mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as health_check:
            response = call(path, **kwargs)
        # On PostgreSQL what psycopg sent: Django's query log also lists the BEGIN and COMMIT of its transaction
        # handling, which send nothing when the transaction is the pipeline's implicit one (rawsql.atomic_pipeline).
        # Django's health check (its `SELECT 1`) has a column of its own.
        statements = (_without_health_checks(sent, health_check.call_count) if connection.vendor == "postgresql"
                      else [q["sql"] for q in captured.captured_queries])
        out[name] = {"status": response.status_code, "count": len(statements),
                     "health_checks": health_check.call_count,
                     "round_trips": round_trips[0] if connection.vendor == "postgresql"
                     else len(captured.captured_queries) + health_check.call_count,
                     "statements": [sql[:120] for sql in statements]}
    return out


def _without_health_checks(sent: list[str], checks: int) -> list[str]:
    """`sent` without the first `checks` of Django's health-check statements (`is_usable`'s `SELECT 1`)."""
    kept = list(sent)
    for _ in range(checks):
        if "SELECT 1" in kept:
            kept.remove("SELECT 1")
    return kept


@contextlib.contextmanager
def _sent() -> Iterator[list[str]]:
    """The text of every statement psycopg 3 sends to the server in the block: its cursors' (Django's, rawsql's,
    Connection.execute's) and its own commands (BEGIN, COMMIT, ROLLBACK, SAVEPOINT). Empty without psycopg."""
    from unittest import mock

    try:
        import psycopg
    except ImportError:
        yield []
        return
    from psycopg._connection_base import BaseConnection

    sent: list[str] = []
    execute, command = psycopg.Cursor.execute, BaseConnection._exec_command

    def counted_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return execute(cursor, query, *args, **kwargs)
        finally:  # after the BEGIN psycopg may send first
            sent.append(query if isinstance(query, str) else str(query))

    def counted_command(conn: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        # What psycopg sends of its own: BEGIN before a transaction's first statement, COMMIT, ROLLBACK, SAVEPOINT.
        sent.append(text.decode() if isinstance(text, bytes) else str(text))
        return command(conn, text, *args, **kwargs)

    with mock.patch.object(psycopg.Cursor, "execute", counted_execute), \
            mock.patch.object(BaseConnection, "_exec_command", counted_command):
        yield sent
