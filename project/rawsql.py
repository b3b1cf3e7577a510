"""Hand-written statements for the hottest reads, without Django's query compiler on every call.

Compiling a queryset costs ~0.5 to 1 ms of Python per query on a small machine; executing the same
SQL on a cursor costs a few tens of µs. `Columns` is what a selector needs to write such a
statement and still get model instances: the column list of a model under a table alias, and
the conversion of a result row back into an instance through the same database and field
converters the ORM applies (JSON decoding, aware datetimes on SQLite, ...). The column list
comes from the model, so a column added to a model is selected without touching the statement.
Statements are built once per database alias and cached by the selectors that own them.

`fetchone` runs such a read. When it is the first statement of a request it also stands in for
Django's per-request health check (CONN_HEALTH_CHECKS: a `SELECT 1` round trip before the first
query, as costly as the statement itself here): the statement is the check, and if the persistent
connection turns out dead (database restarted) it is closed and the statement retried once on a
new connection. Same guarantee, no error from a stale connection, one round trip fewer.
"""
import datetime
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Model

Converter = Callable[[Any, Any, Any], Any]
T = TypeVar("T")


class Columns:
    """The concrete columns of `model` under the SQL alias `alias`, in `_meta.concrete_fields` order (only those
    named by `only`, attnames, when given: their values, not instances)."""

    def __init__(self, model: type[Model], alias: str, *, only: Sequence[str] = ()) -> None:
        self.model = model
        self.alias = alias
        self.fields = [f for f in model._meta.concrete_fields if not only or f.attname in only]
        self.attnames = [f.attname for f in self.fields]
        self._converters: dict[str, list[tuple[int, list[Converter], Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def table(self, using: str = "default") -> str:
        return connections[using].ops.quote_name(self.model._meta.db_table)

    def column(self, attname: str, using: str = "default") -> str:
        field = next(f for f in self.fields if f.attname == attname)
        return f"{self.alias}.{connections[using].ops.quote_name(field.column)}"

    def select(self, using: str = "default") -> str:
        quote = connections[using].ops.quote_name
        return ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)

    def _converters_for(self, using: str) -> list[tuple[int, list[Converter], Any]]:
        found = self._converters.get(using)
        if found is None:
            connection = connections[using]
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if converters:
                    found.append((index, converters, col))
            self._converters[using] = found
        return found

    def values(self, row: Sequence[Any], start: int, using: str = "default") -> list[Any]:
        """This model's slice of `row` (from `start`), converted as the ORM converts it."""
        values = list(row[start:start + len(self.fields)])
        converting = self._converters_for(using)
        if not converting:  # as for the token's and the user's columns on PostgreSQL: no connection lookup either
            return values
        connection = connections[using]
        for index, converters, col in converting:
            value = values[index]
            for converter in converters:
                value = converter(value, col, connection)
            values[index] = value
        return values

    def instance(self, row: Sequence[Any], start: int, using: str = "default") -> Model:
        """A model instance (as loaded from the database) from this model's slice of `row`."""
        return self.model.from_db(using, self.attnames, self.values(row, start, using))


def placeholders(count: int) -> str:
    """`%s, %s, ...`: the parameter markers of an IN list or VALUES row of `count` values."""
    return ", ".join(["%s"] * count)


# (ServerBindingCursor, TIMESTAMPTZ_OID, TEXT, register_tzloader, psycopg's own timestamptz loader), imported once
_postgresql: tuple | None = None


class _StatementCursor:
    """The cursor of these statements on a PostgreSQL connection that nothing watches (no execute wrapper, no
    query log): psycopg's own, run without Django's CursorWrapper (three calls and a context manager per
    statement) and kept for the connection's life (a cursor and its adapters built once, not per statement).
    What the wrapper does for these statements is kept: a broken transaction refused, errors as Django's."""

    __slots__ = ("db", "pg", "raw")

    def __init__(self, db: Any, raw: Any) -> None:
        self.db, self.pg, self.raw = db, db.connection, raw

    def __enter__(self) -> "_StatementCursor":
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # kept open: the next statement of this connection reuses it

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors:
            self.raw.execute(sql, params)

    def fetchone(self) -> tuple | None:
        with self.db.wrap_database_errors:
            return self.raw.fetchone()

    def fetchall(self) -> list[tuple]:
        with self.db.wrap_database_errors:
            return self.raw.fetchall()


def _cursor(connection: Any) -> Any:
    """A cursor for these statements. On PostgreSQL one that binds its parameters on the server (psycopg's
    `Cursor`, where Django's default `ClientCursor` writes them into the SQL text), so that psycopg prepares a
    statement the connection has run a few times (`prepare_threshold`, 5) and the server stops parsing and
    planning it on each request; the rest of the project keeps Django's cursor. When something watches the
    statements (an execute wrapper, the debug log of queries: tests, bench/queries.py), wrapped as Django wraps
    its own; otherwise the connection's _StatementCursor."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    if connection.execute_wrappers or connection.queries_logged:
        return connection._prepare_cursor(_psycopg_cursor(connection))
    connection.validate_thread_sharing()
    return _kept_cursor(connection)


def _psycopg_cursor(connection: Any) -> Any:
    global _postgresql
    if _postgresql is None:
        import psycopg
        from django.db.backends.postgresql.base import TIMESTAMPTZ_OID, ServerBindingCursor
        from django.db.backends.postgresql.psycopg_any import register_tzloader
        from psycopg.pq import Format

        _postgresql = (ServerBindingCursor, TIMESTAMPTZ_OID, Format.TEXT, register_tzloader,
                       psycopg.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT))
    cursor_class, timestamptz, text, register_tzloader, psycopg_timestamptz = _postgresql
    with connection.wrap_database_errors:
        raw = cursor_class(connection.connection)
        if utc_session(connection):
            # Django's loader (a Python subclass of psycopg's Python loader, which then replaces the tzinfo)
            # parses each timestamptz in Python: ~4 µs each, 6 % of a PUT's py-spy samples for its 6 or 7.
            # On a UTC session psycopg's own loader (C, with psycopg[binary]) returns the same aware
            # datetime, in datetime.timezone.utc.
            raw.adapters.register_loader(timestamptz, psycopg_timestamptz)
        # As Django's create_cursor: the cursor's timezone only if the connection's differs.
        elif connection.timezone != connection.connection.adapters.get_loader(timestamptz, text).timezone:
            register_tzloader(connection.timezone, raw)
    return raw


def utc_session(connection: Any) -> bool:
    """Whether both Django and the PostgreSQL session of `connection` keep time in UTC (USE_TZ without a database
    TIME_ZONE, Django's default, sets the session's TimeZone to UTC): then psycopg's own loader reads a
    timestamptz as Django's does, an aware datetime in datetime.timezone.utc."""
    return (connection.timezone is datetime.UTC
            and connection.connection.info.parameter_status("TimeZone") == "UTC")


def _kept_cursor(connection: Any) -> _StatementCursor:
    """The open PostgreSQL connection's _StatementCursor (a new one for a new connection)."""
    kept = getattr(connection, "_rawsql_cursor", None)
    if kept is None or kept.pg is not connection.connection or kept.raw.closed:
        kept = connection._rawsql_cursor = _StatementCursor(connection, _psycopg_cursor(connection))
    return kept


def first_statement_checked(run: Callable[[Callable[[], None]], T], *, using: str = "default") -> T:
    """`run(answered)`, whose first statement stands in for Django's per-request health check (see the module
    docstring): if that statement fails on a persistent connection found dead, the connection is closed and
    `run` called once more, on a new one. `run` calls `answered()` once its first statement has been answered:
    a later failure is raised as it is (something may have been done by then). Only for the first statement of
    a request outside a transaction; otherwise `run` is just called."""
    connection = connections[using]
    # Django would check the connection before this statement; the statement checks it instead.
    checking = (connection.health_check_enabled and not connection.health_check_done
                and connection.connection is not None and not connection.in_atomic_block)
    if checking:
        connection.health_check_done = True
    done: list[bool] = []
    try:
        return run(lambda: done.append(True))
    except (OperationalError, InterfaceError):
        if not checking or done or connection.is_usable():
            raise  # a real error of the statement, or one after it, not a dead connection
        connection.close()
    return run(lambda: None)  # a new connection (and Django's checks on it)


def fetchone(sql: str, params: Sequence[Any], *, using: str = "default") -> tuple | None:
    """The first row of a read-only statement (see the module docstring for the health check it replaces)."""
    def run(answered: Callable[[], None]) -> tuple | None:
        with _cursor(connections[using]) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    return first_statement_checked(run, using=using)


def fetchall(sql: str, params: Sequence[Any] | dict[str, Any], *, using: str = "default") -> list[tuple]:
    """Every row of a statement (a read, or a write with RETURNING) on the statements' cursor, after Django's own
    health check; not retried, as `execute`."""
    with _cursor(connections[using]) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: Sequence[Any], *, using: str = "default") -> None:
    """A write on the statements' cursor (`_cursor`: prepared once the connection has run it a few times), after
    Django's own health check. Not retried on a dead connection as `fetchone` is: a write may have reached the
    database before the connection died."""
    with _cursor(connections[using]) as cursor:
        cursor.execute(sql, params)


# --- writes ------------------------------------------------------------------------------------
# The same statements the ORM's Model.save() / QuerySet.create() send for a plain row, without compiling them on
# every call: the statement is built once per model (and field list) and database, the values go through each
# field's pre_save and get_db_prep_save as the ORM's do (auto_now, JSON, UUIDs, datetimes per database). They
# return nothing, so inside `pipeline` they never wait for the database on their own.

_update_sql: dict[tuple[type[Model], tuple[str, ...], str], tuple[str, list]] = {}


class _InsertPlan:
    """insert_values' statement for one model, set of given fields and database: the SQL, the given fields in
    the order of the statement's placeholders, and for every other field how its default is made (a constant,
    prepared once, or a callable default called per row and then prepared)."""

    def __init__(self, model: type[Model], given: tuple[str, ...], using: str) -> None:
        connection = connections[using]
        quote = connection.ops.quote_name
        fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.auto_created)]
        by_attname = {f.attname: f for f in fields}
        unknown = set(given) - set(by_attname)
        if unknown:
            raise ValueError(f"{model.__name__} has no field {', '.join(sorted(unknown))} to insert")
        for field in fields:
            # A field whose pre_save computes its value (auto_now, files, ...) needs an instance: the ORM's save().
            if not _plain_pre_save(field):
                raise ValueError(f"{model.__name__}.{field.name} is set by pre_save: save an instance instead")
        self.sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
                    f"VALUES ({placeholders(len(fields))})")
        # Per column: (index into the given values, or -1), the field, its constant prepared default or _CALL.
        self.columns: list[tuple[int, Any, Any]] = []
        for field in fields:
            if field.attname in given:
                self.columns.append((given.index(field.attname), field, None))
            elif field.has_default() and callable(field.default):
                self.columns.append((-1, field, _CALL))
            else:
                self.columns.append((-1, field, field.get_db_prep_save(field.get_default(), connection)))


_CALL = object()
_insert_values_plans: dict[tuple[type[Model], tuple[str, ...], str], _InsertPlan] = {}


def _plain_pre_save(field: Any) -> bool:
    from django.db.models import DateField, Field

    pre_save = type(field).pre_save
    if pre_save is Field.pre_save:
        return True
    # DateField's and DateTimeField's pre_save is Field's unless auto_now / auto_now_add.
    return isinstance(field, DateField) and not field.auto_now and not field.auto_now_add


def insert_values(model: type[Model], values: dict[str, Any], *, using: str = "default") -> None:
    """INSERT a row without building an instance or reading anything back (an auto primary key is not returned):
    what Model.save() would send for model(**values), `values` by attname, every other field
    at its default (callable defaults called per row), each prepared by its get_db_prep_save as Model.save()
    prepares it. For the hottest inserts (a model instance and its pre_save calls cost more Python than the
    statement); models with a field whose pre_save computes its value (auto_now...) are refused (ValueError)."""
    given = tuple(values)
    key = (model, given, using)
    plan = _insert_values_plans.get(key)
    if plan is None:
        plan = _insert_values_plans[key] = _InsertPlan(model, given, using)
    connection = connections[using]
    given_values = list(values.values())
    params = []
    for index, field, default in plan.columns:
        if index >= 0:
            params.append(field.get_db_prep_save(given_values[index], connection))
        elif default is _CALL:
            params.append(field.get_db_prep_save(field.default(), connection))
        else:
            params.append(default)
    with _cursor(connection) as cursor:
        cursor.execute(plan.sql, params)


def update(instance: Model, fields: Sequence[str], *, using: str = "default") -> None:
    """UPDATE the row of `instance` (by primary key) with its current values of `fields` (attnames), without
    reading anything back (not even whether the row exists: hold its lock, or know it is there)."""
    model = type(instance)
    key = (model, tuple(fields), using)
    found = _update_sql.get(key)
    if found is None:
        quote = connections[using].ops.quote_name
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        chosen = [by_attname[name] for name in fields]
        sets = ", ".join(f"{quote(f.column)} = %s" for f in chosen)
        sql = f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE {quote(model._meta.pk.column)} = %s"  # noqa: S608
        found = _update_sql[key] = (sql, chosen)
    sql, chosen = found
    connection = connections[using]
    params = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in chosen]
    params.append(model._meta.pk.get_db_prep_value(instance.pk, connection))
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)


@contextmanager
def pipeline(*, using: str = "default") -> Iterator[None]:
    """Inside transaction.atomic: send the block's statements without waiting for each answer (PostgreSQL's
    pipeline mode, psycopg 3). A statement whose result is read waits for everything sent before it; the rest
    go to the server as they are executed and are waited for once, at the end of the block, where an error of
    any of them is raised (and the transaction then rolls back as usual). Elsewhere it does nothing.

    A block of N statements costs 1 round trip plus one per read, instead of N (plus psycopg's BEGIN, which
    goes with the first statement). Inside a transaction only: psycopg would otherwise wait for the server
    each time the transaction starts or ends, which is what the block saves."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("rawsql.pipeline() is for the inside of transaction.atomic()")
    connection.ensure_connection()
    # Errors reported at the end of the block are Django's (IntegrityError, ...), as a cursor's would be.
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


@contextmanager
def atomic_pipeline(*, using: str = "default") -> Iterator[None]:
    """transaction.atomic() around `pipeline` whose transaction costs no statement of its own (PostgreSQL): one wait
    at the first read of the block (or none) and one at its end, for the pipelined writes and the end of the
    transaction together, instead of one more for psycopg's BEGIN and one more for Django's COMMIT. The block is
    the whole transaction, so nothing can run between its last statement and the commit.

    The outermost block on a connection with no isolation level or access mode set is PostgreSQL's implicit
    transaction: every statement sent before the pipeline's Sync (a read in the block waits with a Flush, which
    does not end it) is one transaction, committed by the Sync at the end of the block, rolled back whole if any
    of them fails; a block that raises or is marked for rollback sends ROLLBACK before the Sync. No BEGIN, no
    COMMIT. Nothing in such a block may open a savepoint (a nested atomic() with savepoint=True): PostgreSQL
    refuses SAVEPOINT outside an explicit transaction block, loudly. Otherwise (nested, it is a savepoint and the
    outer block commits; or a BEGIN psycopg must send with the connection's settings) the COMMIT goes with the
    block's last statements. Django's own commit then finds the transaction ended and sends nothing. A failing
    statement is raised at the end of the block as Django's exception, and the transaction is rolled back as
    usual. Elsewhere it is transaction.atomic()."""
    connection = connections[using]
    with transaction.atomic(using=using):
        if connection.vendor != "postgresql":
            yield
            return
        # Outermost, and Django will commit it (not inside a transaction begun with autocommit off).
        ends_transaction = not connection.savepoint_ids and connection.commit_on_exit
        connection.ensure_connection()
        pg = connection.connection
        # psycopg would begin the transaction itself before the first statement, and in a pipeline it waits for
        # that BEGIN's answer (a Sync) before sending anything else: a round trip of its own. With psycopg left in
        # autocommit it sends no BEGIN, and the pipeline's statements up to its Sync are one implicit transaction.
        # Django still holds the transaction (in_atomic_block, on_commit); its commit or rollback afterwards goes
        # by the server's transaction status (psycopg sends ROLLBACK whenever one is open) and it sets autocommit
        # back on as always. Only for a plain transaction (no isolation level or access mode on the connection).
        implicit = (ends_transaction and pg.pgconn.transaction_status == _postgresql_idle()
                    and pg.isolation_level is None and pg.read_only is None and pg.deferrable is None)
        if implicit:
            pg.autocommit = True
        with pipeline(using=using):
            # Sent on psycopg's cursor, not a Django one (Django logs its own, then empty, commit once): the
            # connection's kept cursor (_StatementCursor) rather than a cursor of their own (Connection.execute).
            if not implicit:
                yield
                if ends_transaction and not connection.needs_rollback:
                    _kept_cursor(connection).raw.execute("COMMIT")
                return
            try:
                yield
            except BaseException:
                _implicit_rollback(connection)
                raise
            if connection.needs_rollback:
                _implicit_rollback(connection)


def _implicit_rollback(connection: Any) -> None:
    """End the pipeline's implicit transaction with a rollback, not the commit its Sync would make of it. If the
    ROLLBACK cannot be sent, a statement of the block failed (the transaction is aborted: the Sync rolls it back)
    or the connection is gone (nothing commits); on a pipeline in neither state the connection is closed, so that
    no Sync can commit the block's writes (the server rolls back a session that ends). The block's own error is
    the one raised."""
    try:
        _kept_cursor(connection).raw.execute("ROLLBACK")
    except Exception:
        pg = connection.connection
        from psycopg.pq import PipelineStatus

        if pg is not None and not pg.closed and pg.pgconn.pipeline_status != PipelineStatus.ABORTED:
            pg.close()  # at once (PQfinish), without the Sync that leaving the pipeline would send


_idle: list[Any] = []  # psycopg's TransactionStatus.IDLE, imported once (not on every transaction)


def _postgresql_idle() -> Any:
    if not _idle:
        from psycopg.pq import TransactionStatus

        _idle.append(TransactionStatus.IDLE)
    return _idle[0]
